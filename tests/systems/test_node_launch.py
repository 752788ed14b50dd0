"""Worker jobs of several nodes on PBS, Torque, LSF, Grid Engine and OAR (issue 22): the
rendered job script run by bash, with stand-ins for the launchers that behave as their
manuals say the real ones do.

* ``pbsdsh`` runs its program's argv on each node, in the MOM's bare environment (not the
  job's), with the node's own ``PBS_TASKNUM``;
* ``blaunch -z HOSTS``, ``qrsh -inherit HOST`` and ``oarsh HOST`` stand in for rsh/ssh: the
  command's words are joined with spaces and read again by a shell on the node, in that
  node's environment.

None of those servers can run here (SLURM's srun is tried for real, on the live SLURM: a
2-node job in tests/sessions). What this proves is the script's own part: every node gets
the job's environment (the prologue's too) and the worker command word for word, runs in
the job's directory, keeps its own node variables; the node script is private and gone when
the job ends, and a node whose worker fails fails the job where the script waits per node.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dask_hpc.errors import SpecError
from dask_hpc.spec import JobSpec
from dask_hpc.systems import get_system

pytestmark = pytest.mark.timeout(60)

# What each node's "worker" records: its argv, the job's variables, where it runs, and the
# node script it was started from (its mode).
PROGRAM = r"""
import json, os, stat, sys
from pathlib import Path
jobs = Path(os.environ["HOME"], ".dask-hpc", "jobs")
scripts = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in jobs.iterdir()}
node = os.environ.get("FAKE_NODE", "?")
record = {
    "argv": sys.argv[1:],
    "prologue": os.environ.get("FROM_PROLOGUE"),
    "environment": os.environ.get("FROM_SPEC"),
    "nodes": os.environ.get("DASK_HPC_NODES"),
    "tasknum": os.environ.get("PBS_TASKNUM"),
    "own": [os.environ.get(v) for v in ("CUDA_VISIBLE_DEVICES", "LSB_BIND_CPU_LIST", "TMPDIR")],
    "cwd": os.getcwd(),
    "scripts": scripts,
    "jobs_mode": oct(stat.S_IMODE(jobs.stat().st_mode)),
}
Path(os.environ["RECORDS"], node + ".json").write_text(json.dumps(record))
if os.environ.get("FAIL_ON") == "hang":  # a worker that runs until the job is cancelled
    import time; time.sleep(60)
sys.exit(3 if node == os.environ.get("FAIL_ON") else 0)
"""

# The launchers' stand-ins. BARE: a node's own environment (nothing of the job's); OWN, the
# variables a node's launcher sets there: node0 its GPUs and CPU binding, node1 its TMPDIR.
BARE = 'env -i HOME="$HOME" PATH="$PATH" RECORDS="$RECORDS" FAIL_ON="$FAIL_ON"'
OWN = """own() {
    if [ "$1" = node0 ]; then echo CUDA_VISIBLE_DEVICES=gpus-of-node0 LSB_BIND_CPU_LIST=0-7
    else echo TMPDIR=/scratch/own-of-node1; fi
}"""
FAKES = {
    # pbsdsh [-u] program args...: exec'ed as is on each node (two here), bare environment.
    "pbsdsh": f"""#!/bin/bash
[ "$1" = -u ] && shift
status=0
{OWN}
for task in 0 1; do
    {BARE} FAKE_NODE="node$task" PBS_TASKNUM="$task" $(own "node$task") "$@" || status=$?
done
exit $status
""",
    # blaunch -z "hostA hostB " command...: rsh's way, once on each host named.
    "blaunch": f"""#!/bin/bash
[ "$1" = -z ] || exit 64
hosts=$2; shift 2
status=0
{OWN}
for host in $hosts; do {BARE} FAKE_NODE="$host" $(own "$host") /bin/sh -c "$*" || status=$?; done
exit $status
""",
    # qrsh -inherit -nostdin HOST command...
    "qrsh": f"""#!/bin/bash
[ "$1" = -inherit ] && [ "$2" = -nostdin ] || exit 64
host=$3; shift 3
{OWN}
exec {BARE} FAKE_NODE="$host" $(own "$host") /bin/sh -c "$*"
""",
    # oarsh HOST command...
    "oarsh": f"""#!/bin/bash
host=$1; shift
{OWN}
exec {BARE} FAKE_NODE="$host" $(own "$host") /bin/sh -c "$*"
""",
}

# What each system's job sees of its nodes (two, node0 and node1; listed as each lists them).
JOB_ENV = {
    "pbs": {"PBS_JOBID": "123.pbs01"},
    "torque": {"PBS_JOBID": "123.torque01"},
    "moab": {"PBS_JOBID": "123.torque01"},
    "lsf": {"LSB_JOBID": "812", "LSB_MCPU_HOSTS": "node0 8 node1 8"},
    "sge": {"JOB_ID": "48"},
    "oar": {"OAR_JOB_ID": "7"},
}
NODE_FILES = {
    "sge": ("PE_HOSTFILE", "node0 8 all.q@node0 UNDEFINED\nnode1 8 all.q@node1 UNDEFINED\n"),
    "oar": ("OAR_NODEFILE", "node0\n" * 8 + "node1\n" * 8),
}
SITE = {"sge-parallel-environment": "mpi"}
# Words a shell would take apart if the quoting were lost on the way to a node.
ARGS = ["two words", 'it\'s "quoted"', "$HOME", "*"]


def job(tmp_path: Path, system: str, fail_on: str = "") -> tuple[Path, dict[str, str]]:
    """Write the job script and the launchers' stand-ins; return the script and its env."""
    fakes = tmp_path / "bin"
    fakes.mkdir()
    for name, text in FAKES.items():
        (fakes / name).write_text(text)
        (fakes / name).chmod(0o755)
    home, job_dir, records = tmp_path / "home", tmp_path / "job dir", tmp_path / "records"
    for d in (home, job_dir, records):
        d.mkdir(exist_ok=True)
    spec = JobSpec.from_options(
        cores=8,
        memory="16GB",
        nodes=2,
        walltime="1h",
        job_script_prologue=["export FROM_PROLOGUE='set by the prologue'"],
        environment={"FROM_SPEC": "a b"},
    )
    script = tmp_path / "job.sh"
    script.write_text(get_system(system, SITE).render(spec, [sys.executable, "-c", PROGRAM, *ARGS]))
    env = {
        "PATH": f"{fakes}:/usr/bin:/bin",
        "HOME": str(home),
        "RECORDS": str(records),
        "FAIL_ON": fail_on,
        # The first node's own, which the job script sees: not the other nodes'.
        "CUDA_VISIBLE_DEVICES": "gpus-of-the-first-node",
        "LSB_BIND_CPU_LIST": "8-15",
        "TMPDIR": "/scratch/the job's",
        **JOB_ENV[system],
    }
    if system in NODE_FILES:
        name, text = NODE_FILES[system]
        (tmp_path / "nodefile").write_text(text)
        env[name] = str(tmp_path / "nodefile")
    return script, env


def run_job(
    tmp_path: Path, system: str, fail_on: str = ""
) -> tuple[subprocess.CompletedProcess[str], dict[str, dict]]:
    script, env = job(tmp_path, system, fail_on)
    jobs = tmp_path / "home" / ".dask-hpc" / "jobs"
    before = set(jobs.glob("*.sh")) if jobs.exists() else set()
    done = subprocess.run(
        ["/bin/bash", str(script)],
        cwd=tmp_path / "job dir",
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    found = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")}
    assert set(jobs.glob("*.sh")) <= before, "the node script outlived the job"
    return done, found


@pytest.mark.parametrize("system", ["pbs", "torque", "moab", "lsf", "sge", "oar"])
def test_each_node_runs_the_worker_with_the_jobs_environment(tmp_path: Path, system: str) -> None:
    done, found = run_job(tmp_path, system)
    assert done.returncode == 0, done.stderr
    assert sorted(found) == ["node0", "node1"], (found, done.stderr)
    for node, record in found.items():
        assert record["argv"] == ARGS, node  # word for word, quoting kept
        assert record["prologue"] == "set by the prologue" and record["environment"] == "a b"
        assert record["nodes"] == "2"  # the workers are named after job and node
        assert record["cwd"] == str(tmp_path / "job dir")
    # Each node keeps its own GPUs and CPU binding (none where its launcher set none), and
    # its own TMPDIR; the job's where it has none.
    assert found["node0"]["own"] == ["gpus-of-node0", "0-7", "/scratch/the job's"]
    assert found["node1"]["own"] == [None, None, "/scratch/own-of-node1"]
    for record in found.values():
        ((_script, mode),) = record["scripts"].items()
        assert mode == "0o600" and record["jobs_mode"] == "0o700", record
    if system in ("pbs", "torque", "moab"):
        # Each pbsdsh task keeps its own PBS_TASKNUM: the job's is not written over it.
        assert {r["tasknum"] for r in found.values()} == {"0", "1"}


@pytest.mark.parametrize("system", ["sge", "oar", "lsf", "pbs"])
def test_a_node_whose_worker_fails_fails_the_job(tmp_path: Path, system: str) -> None:
    done, found = run_job(tmp_path, system, fail_on="node1")
    assert sorted(found) == ["node0", "node1"]
    assert done.returncode != 0


@pytest.mark.parametrize("system", ["htcondor", "local"])
def test_systems_without_a_launcher_refuse_several_nodes_in_one_line(system: str) -> None:
    spec = JobSpec.from_options(cores=2, memory="4GB", nodes=2, walltime="1h")
    with pytest.raises(SpecError, match=r"invalid nodes 2: .* holds one node .*--processes") as raised:
        get_system(system).render(spec, ["true"])
    assert "\n" not in str(raised.value)


def test_grid_engine_needs_a_parallel_environment_for_several_nodes() -> None:
    spec = JobSpec.from_options(cores=4, memory="4GB", nodes=2, walltime="1h")
    for site in ({}, {"sge-parallel-environment": "none"}):
        with pytest.raises(
            SpecError, match=r"invalid nodes 2: .*allocation_rule 4.*sge-parallel-environment"
        ):
            get_system("sge", site).render(spec, ["true"])
    script = get_system("sge", {"sge-parallel-environment": "mpi"}).render(spec, ["true"])
    assert "#$ -pe mpi 8\n" in script  # 4 slots on each of 2 nodes


RECORDED_SGE = Path(__file__).resolve().parent.parent / "recorded" / "sge"


@pytest.mark.parametrize(
    ("pe", "own", "refused"),
    [
        ("node4", None, None),  # allocation_rule 4: 4 slots on each host
        ("mpi", None, r"parallel environment mpi has allocation_rule \$fill_up, which does not put 4 slots"),
        ("nosuch", None, r"Grid Engine does not know the parallel environment nosuch"),
        ("mpi", "-pe node4 8", None),  # the user's own -pe is the one checked
        ("node4", "-pe mpi 8", r"parallel environment mpi has allocation_rule \$fill_up"),
        ("mpi", "-pe node4 4", r"node4 has allocation_rule 4, which does not put 2 slots on each"),
    ],
)
def test_grid_engine_reads_the_parallel_environment_of_a_job_of_several_nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pe: str, own: str | None, refused: str | None
) -> None:
    """qconf -sp, recorded on the local Grid Engine (mpi: $fill_up; node4: a PE with
    allocation_rule 4): a job of 2 nodes of 4 cores needs 4 slots on each host, or Grid
    Engine puts all 8 on one and the second node's worker never starts."""
    qconf = tmp_path / "qconf"
    qconf.write_text(
        f"""#!/bin/sh
[ "$1" = -sp ] || exit 64
[ -f "{RECORDED_SGE}/qconf-sp-$2.txt" ] || {{ echo "$2 is not a parallel environment" >&2; exit 1; }}
cat "{RECORDED_SGE}/qconf-sp-$2.txt"
"""
    )
    qconf.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    sge = get_system("sge", {"sge-parallel-environment": pe})
    spec = JobSpec.from_options(cores=4, nodes=2, job_extra_directives=[own] if own else [])
    sge.check_site(JobSpec.from_options(cores=4))  # one node: nothing to ask
    if refused is None:
        sge.check_site(spec)
        return
    with pytest.raises(SpecError, match=refused) as raised:
        sge.check_site(spec)
    assert "\n" not in str(raised.value) and "qconf -spl" in str(raised.value)


def test_grid_engine_refuses_a_parallel_environment_without_control_slaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        (RECORDED_SGE / "qconf-sp-node4.txt")
        .read_text()
        .replace("control_slaves     TRUE", "control_slaves     FALSE")
    )
    qconf = tmp_path / "qconf"
    qconf.write_text(f"#!/bin/sh\ncat <<'EOF'\n{text}EOF\n")
    qconf.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(
        SpecError, match="has control_slaves FALSE, so qrsh -inherit cannot start workers on its"
    ):
        get_system("sge", {"sge-parallel-environment": "node4"}).check_site(
            JobSpec.from_options(cores=4, nodes=2)
        )


def test_the_node_script_is_private_even_under_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        done, found = run_job(tmp_path, "oar")
    finally:
        os.umask(old)
    assert done.returncode == 0
    assert all(stat.S_IMODE(int(str(r["jobs_mode"]), 8)) == 0o700 for r in found.values())


@pytest.mark.parametrize("system", ["pbs", "lsf"])
def test_a_cancelled_job_removes_its_node_script(tmp_path: Path, system: str) -> None:
    # PBS's qdel and LSF's bkill signal the job's processes (SIGTERM, then SIGKILL after a
    # grace time): the launcher dies with its workers, and bash must still run its EXIT trap.
    # (Grid Engine's qdel sends SIGKILL unless the queue says otherwise: there only the
    # day-later sweep below removes the script.)
    script, env = job(tmp_path, system, fail_on="hang")
    records, jobs = tmp_path / "records", tmp_path / "home" / ".dask-hpc" / "jobs"
    running = subprocess.Popen(
        ["/bin/bash", str(script)],
        cwd=tmp_path / "job dir",
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):  # up to 30 s for the first node's worker to start
            if list(records.glob("*.json")):
                break
            time.sleep(0.1)
        assert list(jobs.glob("*.sh")), "the node script was not written"
        os.killpg(running.pid, signal.SIGTERM)
        assert running.wait(timeout=20) == 143
    finally:
        if running.poll() is None:
            os.killpg(running.pid, signal.SIGKILL)
            running.wait(timeout=10)
    assert not list(jobs.glob("*.sh")), "the node script outlived the cancelled job"


def test_node_scripts_left_by_jobs_killed_outright_are_removed_a_day_later(
    tmp_path: Path,
) -> None:
    jobs = tmp_path / "home" / ".dask-hpc" / "jobs"
    jobs.mkdir(parents=True, mode=0o700)
    stale, recent = jobs / "node9-111.sh", jobs / "node9-222.sh"
    for path in (stale, recent):
        path.write_text("exec true\n")
    two_days_ago = time.time() - 2 * 86400
    os.utime(stale, (two_days_ago, two_days_ago))
    done, _found = run_job(tmp_path, "oar")
    assert done.returncode == 0, done.stderr
    assert not stale.exists()
    assert recent.exists()  # a job that may still be starting its nodes keeps its script


@pytest.mark.parametrize(
    ("system", "resource_spec", "extra", "refused"),
    [
        ("pbs", "select=1:ncpus=8:mem=16gb", [], "ask for 1 nodes"),
        ("pbs", "select=2:ncpus=8:mem=16gb:mpiprocs=1", [], "do not place the chunks on separate hosts"),
        ("pbs", "select=2:ncpus=8:mem=16gb:mpiprocs=1,place=scatter", [], None),
        ("pbs", None, ["-l select=2:ncpus=8:mpiprocs=1"], None),  # our place=scatter stays
        ("pbs", None, ["-l select=1:ncpus=8"], "ask for 1 nodes"),
        ("pbs", "ncpus=8", [], "name no nodes"),
        ("torque", "nodes=1:ppn=8", [], "ask for 1 nodes"),
        ("torque", "nodes=2:ppn=8", [], None),
        ("torque", None, ["-l pmem=4gb"], None),  # replaces our pmem, not our nodes
        ("moab", None, ["-l nodes=4:ppn=8"], "ask for 4 nodes"),
        ("oar", "/nodes=1/core=8", [], "ask for 1 nodes"),
        ("oar", "/nodes=2/core=8", [], None),
        ("oar", "nodes=2/core=4", [], None),
        ("oar", "/host=2/core=4", [], None),  # Grid'5000's words
        ("slurm", None, ["-N 3"], "ask for 3 nodes"),
        ("slurm", None, ["--nodes=2"], None),
    ],
)
def test_a_job_of_several_nodes_whose_directives_do_not_ask_for_them_is_refused_in_one_line(
    system: str, resource_spec: str | None, extra: list[str], refused: str | None
) -> None:
    """dask-jobqueue's resource_spec (or an extra directive) replaces our resources: with
    --nodes 2 the job's directives, as rendered, must ask for 2 nodes (PBS Pro: chunks on
    separate hosts), or the launcher would start fewer workers, or two of one name on a host."""
    site = {"resource-spec": resource_spec} if resource_spec else {}
    spec = JobSpec.from_options(cores=8, memory="16GB", nodes=2, walltime="1h", job_extra_directives=extra)
    if refused is None:
        get_system(system, site).render(spec, ["true"])
        return
    with pytest.raises(SpecError, match=rf"invalid nodes 2: the job's directives .* {refused}") as raised:
        get_system(system, site).render(spec, ["true"])
    assert "\n" not in str(raised.value) and "leave them out" in str(raised.value)
    # One node: the user's resources are theirs to write.
    get_system(system, site).render(JobSpec.from_options(cores=8, memory="16GB", walltime="1h"), ["true"])


def test_a_worker_command_of_its_own_cannot_span_nodes() -> None:
    """dask-cuda's worker (any worker_command of the user's) is named after the job only: on
    several nodes every worker would have one name, and the scheduler keeps one of them."""
    from dask_hpc.keeper.scripts import worker_command

    spec = JobSpec.from_options(nodes=2, worker_command="dask_cuda.cli.dask_cuda_worker")
    with pytest.raises(
        SpecError, match=r"invalid nodes 2: worker_command dask_cuda.cli.dask_cuda_worker names"
    ):
        worker_command(spec, "/s.json", job_id_variable="PBS_JOBID")
    assert "--nworkers" in worker_command(
        JobSpec.from_options(nodes=2), "/s.json", job_id_variable="PBS_JOBID"
    )


def test_grid_engine_leaves_a_job_to_qsub_where_qconf_cannot_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """qconf refused for another reason than an unknown parallel environment (a host that is
    neither submit nor admin host): nothing refused here; qsub will say what it says."""
    qconf = tmp_path / "qconf"
    qconf.write_text(
        "#!/bin/sh\necho 'denied: host \"node7\" is neither submit nor admin host' >&2\nexit 1\n"
    )
    qconf.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    get_system("sge", {"sge-parallel-environment": "node4"}).check_site(
        JobSpec.from_options(cores=4, nodes=2)
    )
