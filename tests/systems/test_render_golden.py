"""Golden job scripts: every system, a handful of specs, quoting included.

A mismatch fails. To accept a deliberate change, regenerate with
``pytest tests/systems/test_render_golden.py --regen-golden`` and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dask_hpc import JobSpec
from dask_hpc.errors import SpecError
from dask_hpc.keeper.scripts import scheduler_command, worker_command, worker_script
from dask_hpc.security import tls_files
from dask_hpc.session.lifecycle import session_specs
from dask_hpc.systems import SYSTEMS, get_system

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
PYTHON = "/opt/conda/envs/analysis/bin/python"
SCHEDULER_FILE = "/home/alice/.dask-hpc/sessions/default/scheduler.json"

# Extra directives are the system's own syntax, so they differ per system.
EXTRA = {
    "slurm": ["--constraint=haswell", "--exclusive"],
    "pbs": ["-l place=excl", "-m n"],
    "torque": ["-l naccesspolicy=singlejob"],
    "sge": ["-l exclusive=true"],
    "lsf": ['-R "select[mem>10000]"'],
    "htcondor": ['requirements = (OpSysAndVer == "CentOS7")'],
    "moab": ["-l naccesspolicy=singlejob"],
    "oar": ["-t besteffort", "-p cluster='dahu'"],
    "local": [],
}

CASES = {
    "default": {},
    "full": {
        "cores": 8,
        "processes": 2,
        "memory": "16GB",
        "walltime": "1h30m",
        "queue": "regular",
        "account": "ABC123",
        "log_directory": "/scratch/alice/logs",
        "job_script_prologue": ["module load python/3.11", "source activate analysis"],
        "environment": {"OMP_NUM_THREADS": "1"},
    },
    "quoting": {
        "walltime": "2-00:00:00",
        "memory": "1.5TB",
        "log_directory": "/scratch/my logs/it's here",
        # Literal, except the job's own variables ($TMPDIR, ${USER}), which its shell expands on the
        # node; NAME=VALUE text (a command line, a config file) loses the quotes wrapped round it.
        "environment": [
            "GREETING=hello world; $(rm -rf /)",
            "EMPTY=",
            'SCRATCH=$TMPDIR/dask-${USER}; "$(not run)" `nor this`',
            "QUOTED='as written in a config file'",
        ],
    },
    # The user's directives replace ours that set the same thing; job_directives_skip drops ours.
    "override": {"cores": 4, "memory": "4GB", "walltime": "1h", "account": "ABC123"},
}

# Job names: SLURM takes quotes and spaces; the others refuse them (test_job_names_are_refused).
QUOTING_NAME = {"slurm": 'it\'s "my" job'}

OVERRIDE = {
    "slurm": (["--mem-per-gpu=4G", "--cpus-per-gpu=4", "--gres=gpu:1", "--time-min=30"], ["--nodes"]),
    "pbs": (["-l select=1:ncpus=4:ngpus=1:mem=8gb"], ["-A "]),
    "torque": (["-l nodes=1:ppn=4:gpus=1", "-l pmem=2gb"], ["-A "]),
    "sge": (["-l h_vmem=4G", "-pe mpi 4"], ["-P "]),
    "lsf": (["-M 8GB", '-R "span[ptile=4]"'], ["-P "]),
    "htcondor": (["request_memory = 8GB", "request_gpus = 1"], ["accounting_group"]),
    "moab": (["-l nodes=1:ppn=4:gpus=1", "-l pmem=2gb"], ["-A "]),
    "oar": (["-n gpu-workers", "-O /scratch/alice/%jobid%.out"], ["--project"]),
    "local": (["--output=/scratch/alice/%x-%j.out"], []),
}


# A session's two kinds of job: the scheduler's (with the keeper), and a worker's.
STATE_DIR = Path("/home/alice/.dask-hpc/sessions/climate")
SESSION_OPTIONS = {"queue": "regular", "account": "ABC123", "walltime": "30m", "cores": 4}
# The workers' extra directives are theirs: the scheduler's job gets its own.
SCHEDULER_DIRECTIVES = {"slurm": ["--qos=interactive"], "pbs": ["-l place=shared"]}
SESSION_CASES = ("session-scheduler", "session-worker")
#: An array of 5 worker jobs (issue 22): the array's directive, logs named per task.
ARRAY_CASES = ("array",)
#: A job of 2 nodes (issue 22): each system's launcher starts the workers on each node;
#: HTCondor and local refuse it.
NODE_CASES = ("nodes",)
#: Two GPUs a node, one worker each (issue 23), in each system's words; on 2 nodes too.
#: Grid Engine with the site's consumable named (sge-gpu-resource), OAR refuses without
#: resource_spec (its hierarchy is the site's).
GPU_CASES = ("gpus", "gpus-nodes")


#: A site's settings (dask-hpc's configuration), as our test Grid Engine has them: every
#: system takes what is its own and leaves the rest.
SITE = {"sge-parallel-environment": "smp", "memory-per-core-property-name": "memcore"}


def render_session(system: str, case: str) -> str:
    options: dict[str, object] = {**SESSION_OPTIONS, "job_extra_directives": EXTRA[system]}
    if system == "htcondor":
        options.pop("queue")
    try:
        worker, scheduler = session_specs(
            "climate",
            options,
            scheduler_walltime="4h",
            scheduler_directives=SCHEDULER_DIRECTIVES.get(system, []),
            logs=STATE_DIR / "logs",
        )
        batch = get_system(system, SITE)
        if case == "session-scheduler":
            return batch.render(scheduler, scheduler_command(STATE_DIR, python=PYTHON))
        return worker_script(
            batch,
            worker,
            STATE_DIR / "scheduler.json",
            python=PYTHON,
            interface="ib0",
            tls=tls_files(STATE_DIR),
        )
    except SpecError as exc:
        return f"SpecError: {exc}\n"


def render(system: str, case: str) -> str:
    if case in SESSION_CASES:
        return render_session(system, case)
    if case in GPU_CASES:
        nodes = 2 if case == "gpus-nodes" else 1
        spec = JobSpec.from_options(cores=8, processes=2, gpus=2, memory="32GB", nodes=nodes, walltime="1h")
        site = {**SITE, "sge-parallel-environment": "node8", "sge-gpu-resource": "gpu"}
        try:
            return get_system(system, site).render(spec, worker_command(spec, SCHEDULER_FILE, python=PYTHON))
        except SpecError as exc:
            return f"SpecError: {exc}\n"
    if case in NODE_CASES:
        spec = JobSpec.from_options(cores=8, processes=2, memory="16GB", nodes=2, walltime="1h")
        try:
            # Grid Engine: a parallel environment that puts 8 slots on each host (allocation_rule 8).
            site = {**SITE, "sge-parallel-environment": "node8"}
            return get_system(system, site).render(spec, worker_command(spec, SCHEDULER_FILE, python=PYTHON))
        except SpecError as exc:
            return f"SpecError: {exc}\n"
    if case in ARRAY_CASES:
        options = {**SESSION_OPTIONS, "log_directory": "/scratch/alice/logs"}
        if system in ("htcondor", "local"):
            options.pop("queue")
        if system == "local":
            options.pop("account")
        spec = JobSpec.from_options(options)
        try:
            return get_system(system, SITE).render(
                spec, worker_command(spec, SCHEDULER_FILE, python=PYTHON), 5
            )
        except SpecError as exc:
            return f"SpecError: {exc}\n"
    options = dict(CASES[case])
    if case == "full":
        options["job_extra_directives"] = EXTRA[system]
        if system == "htcondor":
            options.pop("queue")  # HTCondor has no queues: see test below
    if case == "quoting":
        options["job_name"] = QUOTING_NAME.get(system, "my_run.2")
    if case == "override":
        options["job_extra_directives"], options["job_directives_skip"] = OVERRIDE[system]
        if system == "local":
            options.pop("account")
    spec = JobSpec.from_options(options)
    command = worker_command(spec, SCHEDULER_FILE, python=PYTHON)
    try:
        return get_system(system, SITE).render(spec, command)
    except SpecError as exc:  # a spec this system cannot express: the error is the golden text
        return f"SpecError: {exc}\n"


@pytest.mark.parametrize("case", [*sorted(CASES), *SESSION_CASES, *ARRAY_CASES, *NODE_CASES, *GPU_CASES])
@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_golden(system: str, case: str, request: pytest.FixtureRequest) -> None:
    path = GOLDEN / f"{system}-{case}.txt"
    text = render(system, case)
    if request.config.getoption("--regen-golden"):
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}; run pytest with --regen-golden and review it"
    assert text == path.read_text(), f"{path.name} differs; if intended, --regen-golden and review"


def test_every_system_has_golden_files() -> None:
    names = {p.name for p in GOLDEN.glob("*.txt")}
    expected = {
        f"{s}-{c}.txt"
        for s in SYSTEMS
        for c in [*CASES, *SESSION_CASES, *ARRAY_CASES, *NODE_CASES, *GPU_CASES]
    }
    assert names == expected


def test_htcondor_refuses_a_queue() -> None:
    spec = JobSpec.from_options(queue="regular")
    with pytest.raises(SpecError, match="HTCondor has no queues"):
        get_system("htcondor").render(spec, ["true"])


@pytest.mark.parametrize("system", sorted(set(SYSTEMS) - {"htcondor"}))
def test_scripts_are_valid_bash(system: str, tmp_path: Path) -> None:
    import subprocess

    for case in [*CASES, *SESSION_CASES, *ARRAY_CASES, *NODE_CASES, *GPU_CASES]:
        script = tmp_path / f"{case}.sh"
        text = render(system, case)
        if text.startswith("SpecError"):
            continue
        script.write_text(text)
        check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_environment_values_cannot_run_commands(tmp_path: Path) -> None:
    """The rendered body exports values literally: no command substitution."""
    import subprocess

    spec = JobSpec.from_options(CASES["quoting"])
    script = get_system("local").render(
        spec, ["bash", "-c", 'printf "%s|%s|%s|%s" "$GREETING" "$EMPTY" "$SCRATCH" "$QUOTED"']
    )
    path = tmp_path / "job.sh"
    path.write_text(script)
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": "/node/tmp", "USER": "alice"}
    out = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=30, env=env)
    assert out.stdout == (
        'hello world; $(rm -rf /)||/node/tmp/dask-alice; "$(not run)" `nor this`|as written in a config file'
    )


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_job_names_are_refused_not_changed(system: str) -> None:
    """A name the system cannot take is refused in one line; none takes a "/"."""
    batch = get_system(system)
    with pytest.raises(SpecError, match="cannot contain '/'"):
        JobSpec.from_options(job_name="runs/1")
    if system != "slurm":
        with pytest.raises(SpecError, match=f"{system} cannot take a space in a job name"):
            batch.job_name(JobSpec.from_options(job_name="my run"))


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_each_of_our_directives_sets_one_thing(system: str) -> None:
    """The table that decides what a user's directive replaces knows each of ours."""
    batch = get_system(system, SITE)
    spec = JobSpec.from_options(CASES["full"], log_directory="/logs")
    if system in ("htcondor", "local"):
        spec = JobSpec.from_options({**CASES["full"], "queue": None, "account": None}, cores=8)
    for directive in batch.directives(spec):
        if system == "oar" and directive.startswith("-l "):  # OAR's one line for both
            assert batch.sets(directive) == {"resources", "walltime"}
            continue
        assert len(batch.sets(directive)) == 1, directive


def test_slurm_user_memory_directive_replaces_ours() -> None:
    """--mem, --mem-per-cpu and --mem-per-gpu exclude each other: sbatch refuses two."""
    slurm = get_system("slurm")
    spec = JobSpec.from_options(memory="4GB", job_extra_directives=["--mem-per-gpu=4G"])
    header = slurm.header(spec)
    assert "--mem-per-gpu=4G" in header and not any(d.startswith("--mem=") for d in header)
    skipped = JobSpec.from_options(job_directives_skip=["--mem"])
    assert not any(d.startswith("--mem") for d in slurm.header(skipped))


def test_scheduler_job_takes_only_queue_account_and_software() -> None:
    worker, scheduler = session_specs(
        "gpu",
        {
            "queue": "gpu",
            "account": "A1",
            "cores": 8,
            "memory": "64GB",
            "job_extra_directives": ["--gres=gpu:1"],
            "job_script_prologue": ["module load cuda"],
            "environment": {"X": "1"},
        },
        logs=STATE_DIR / "logs",
    )
    assert worker.job_extra_directives == ("--gres=gpu:1",)
    assert scheduler.job_extra_directives == () and scheduler.cores == 1
    assert (scheduler.queue, scheduler.account) == ("gpu", "A1")
    assert scheduler.job_script_prologue == ("module load cuda",) and scheduler.environment == (("X", "1"),)


@pytest.mark.parametrize(
    ("system", "directive"),
    [
        ("slurm", "-t 2:00:00"),
        ("slurm", "--time=120"),
        ("pbs", "-l walltime=02:00:00"),
        ("torque", "-l walltime=02:00:00"),
        ("sge", "-l h_rt=7200,h_vmem=4G"),
        ("lsf", "-W 120"),
        ("local", "--walltime=60"),
    ],
)
def test_a_walltime_directive_is_refused_for_walltime(system: str, directive: str) -> None:
    """Workers retire, and replacements are planned, by the spec's walltime: a directive that
    changed the job's alone would make the plan wrong (a worker killed with its data)."""
    spec = JobSpec.from_options(job_extra_directives=[directive])
    with pytest.raises(SpecError, match=r"sets the walltime: give it with --walltime"):
        get_system(system).render(spec, ["true"])


def test_up_is_told_which_of_our_directives_the_users_replace() -> None:
    spec = JobSpec.from_options(
        memory="4GB", job_extra_directives=["--mem-per-cpu=1G", "-c 2"], job_directives_skip=["--nodes"]
    )
    assert get_system("slurm").replaced(spec) == {
        "--nodes=1": "--nodes",
        "--cpus-per-task=1": "-c 2",
        "--mem=3815M": "--mem-per-cpu=1G",
    }


@pytest.mark.parametrize("value", ["${X:-$HOME}", "${X:-`id`}", "${X:=${Y}}"])
def test_a_default_that_names_another_variable_is_refused_not_mangled(value: str) -> None:
    """It rendered as the text ``${X:-/home/alice}``: neither the user's meaning nor a shell's."""
    spec = JobSpec.from_options(environment=[f"A={value}"])
    with pytest.raises(SpecError, match=r"default refers to another variable"):
        get_system("slurm").render(spec, ["true"])


def test_grid_engine_assumes_no_parallel_environment() -> None:
    """Their names are the site's (sites without "smp" rejected every job of several cores):
    the configured one, the user's own, or left out on purpose; else one line saying how."""
    spec = JobSpec.from_options(cores=4)
    with pytest.raises(
        SpecError, match=r"set sge-parallel-environment .* or give --job-extra-directive '-pe NAME 4'"
    ):
        get_system("sge").render(spec, ["true"])
    assert "#$ -pe mpi 4" in get_system("sge", {"sge-parallel-environment": "mpi"}).render(spec, ["true"])
    own = JobSpec.from_options(cores=4, job_extra_directives=["-pe make 4"])
    assert "#$ -pe make 4" in get_system("sge").render(own, ["true"]).splitlines()
    skipped = JobSpec.from_options(cores=4, job_directives_skip=["-pe"])
    assert "-pe" not in get_system("sge").render(skipped, ["true"])
    assert "-pe" not in get_system("sge").render(JobSpec.from_options(cores=1), ["true"])
    assert get_system("sge", {"sge-parallel-environment": "mpi"}).settings() == {
        "sge-parallel-environment": "mpi"
    }
    assert get_system("slurm", {"sge-parallel-environment": "mpi"}).settings() == {}


@pytest.mark.parametrize(
    ("system", "resource_spec"),
    [
        ("pbs", "select=1:ncpus=4:mem=8gb,walltime=01:00:00"),
        ("torque", "nodes=1:ppn=4,walltime=01:00:00"),
        ("moab", "nodes=1:ppn=4,walltime=01:00:00"),
        ("sge", "h_vmem=4G,h_rt=3600"),
        ("sge", "s_rt=3600"),
        ("oar", "/nodes=1/core=4,walltime=1"),
    ],
)
def test_a_walltime_inside_resource_spec_is_refused(system: str, resource_spec: str) -> None:
    """The walltime is dask-hpc's (it retires workers by it): a second one in the resources
    would make the batch system and the keeper disagree on when the job ends."""
    with pytest.raises(SpecError, match="holds a walltime: give it with --walltime"):
        get_system(system, {"resource-spec": resource_spec})


@pytest.mark.parametrize("system", sorted(set(SYSTEMS) - {"local", "htcondor"}))  # HTCondor: no prefix
def test_an_extra_directive_with_its_prefix_is_refused(system: str) -> None:
    """`#OAR -t besteffort` given whole would be written `#OAR #OAR -t besteffort`."""
    batch = get_system(system, SITE)
    directive = f"{batch.directive_prefix} -q debug"
    spec = JobSpec.from_options(job_extra_directives=[directive])
    with pytest.raises(SpecError, match="give it without its prefix"):
        batch.render(spec, ["true"])
