"""A dask-jobqueue user's script with its import changed: the classes keep dask-jobqueue's
defaults, its jobqueue.yaml, its deprecated names, and refuse what it refuses, in one line.

Every cluster here runs its scheduler in this process, on loopback, and submits nothing.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

import dask_hpc
from dask_hpc.errors import ConfigError, ParseError, SessionError, SpecError
from dask_hpc.jobqueue import (
    HTCondorCluster,
    JobQueueCluster,
    LSFCluster,
    MoabCluster,
    OARCluster,
    PBSCluster,
    SGECluster,
    SLURMCluster,
)
from dask_hpc.systems import get_system

from .read_scripts import read_script, read_worker


@pytest.fixture(autouse=True)
def own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """An empty site and user configuration, and sessions in this test's directory."""
    site, user = tmp_path / "etc-dask", tmp_path / "config-dask"
    site.mkdir()
    user.mkdir()
    monkeypatch.setenv("DASK_ROOT_CONFIG", str(site))
    monkeypatch.setenv("DASK_CONFIG", str(user))
    monkeypatch.setenv("DASK_HPC_SESSIONS", str(tmp_path / "sessions"))
    for key in [k for k in os.environ if k.startswith(("DASK_JOBQUEUE__", "DASK_DASK_HPC__"))]:
        monkeypatch.delenv(key)
    return {"site": site, "user": user}


def script_of(cls: type[JobQueueCluster], **keywords: Any) -> str:
    with cls(interface="lo", **keywords) as cluster:
        return str(cluster.job_script())


def test_the_classes_are_importable_from_dask_hpc() -> None:
    names = ("SLURMCluster", "PBSCluster", "SGECluster", "LSFCluster", "HTCondorCluster")
    for name in (*names, "OARCluster", "MoabCluster"):
        assert getattr(dask_hpc, name) is getattr(dask_hpc.jobqueue, name)
        assert name in dask_hpc.__all__


def test_dask_jobqueues_defaults(tmp_path: Path) -> None:
    """Processes near the square root of the cores, 30 minutes, dask-worker, the scheduler
    here, plain tcp, a session of its own: as dask-jobqueue does."""
    with SLURMCluster(cores=36, memory="100GB", interface="lo") as cluster:
        assert (cluster.spec.processes, cluster.spec.threads_per_process) == (6, 6)
        assert cluster.spec.walltime == 30 * 60 and cluster.job_name == "dask-worker"
        assert cluster.scheduler_address.startswith("tcp://127.")
        assert cluster.security is None
        assert cluster.session.name.startswith("slurm-")
        assert cluster.status_report().scheduler is not None  # the session is ours to inspect
    with SLURMCluster(cores=4, memory="8GB", interface="lo") as other:
        assert other.session.name != cluster.session.name  # two at once, as dask-jobqueue allows
    # BatchCluster keeps dask-hpc's: one process, an hour.
    with dask_hpc.BatchCluster("slurm", scheduler="local", cores=36, interface="lo", name="ours") as ours:
        assert (ours.spec.processes, ours.spec.walltime) == (1, 3600)
        assert ours.scheduler_address.startswith("tls://")


def test_jobqueue_yaml_is_read_with_keywords_first_and_config_name(own_config: dict[str, Path]) -> None:
    (own_config["user"] / "jobqueue.yaml").write_text(
        yaml.safe_dump(
            {
                "jobqueue": {
                    "slurm": {"cores": 8, "memory": "24GB", "queue": "regular", "walltime": "90"},
                    "slurm-gpu": {"cores": 4, "job-extra-directives": ["--gres=gpu:1"], "job-mem": "40G"},
                }
            }
        )
    )
    job = read_script("slurm", script_of(SLURMCluster))
    assert (job["cpus-per-task"], job["partition"], job["time"]) == (8, "regular", 90 * 60)  # SLURM's minutes
    job = read_script("slurm", script_of(SLURMCluster, queue="debug", cores=2))
    assert (job["cpus-per-task"], job["partition"]) == (2, "debug")
    job = read_script("slurm", script_of(SLURMCluster, config_name="slurm-gpu"))
    assert (job["cpus-per-task"], job["gres"], job["mem"]) == (4, "gpu:1", 40 * 2**30)
    assert "partition" not in job  # another section: nothing of jobqueue.slurm's


def test_configured_processes_and_walltime_are_not_replaced_by_the_defaults(
    own_config: dict[str, Path],
) -> None:
    (own_config["user"] / "dask-hpc.yaml").write_text(
        yaml.safe_dump({"dask-hpc": {"processes": 1, "walltime": "2h"}})
    )
    with PBSCluster(cores=36, interface="lo") as cluster:
        assert (cluster.spec.processes, cluster.spec.walltime) == (1, 7200)


def test_a_bad_value_in_jobqueue_yaml_is_one_line(own_config: dict[str, Path]) -> None:
    path = own_config["user"] / "jobqueue.yaml"
    path.write_text(yaml.safe_dump({"jobqueue": {"slurm": {"job-cpu": "many"}}}))
    with pytest.raises(ConfigError, match=r"jobqueue.slurm.job-cpu.*job-cpu 'many': must be a whole number"):
        SLURMCluster(interface="lo")


def test_deprecated_names_warn_as_dask_jobqueue_and_yield_to_the_new_ones() -> None:
    for old, new, value in [
        ("env_extra", "job_script_prologue", ["module load a"]),
        ("job_extra", "job_extra_directives", ["--exclusive"]),
        ("extra", "worker_extra_args", ["--lifetime", "55m"]),
        ("header_skip", "job_directives_skip", ["--mem"]),
        ("project", "account", "abc123"),
    ]:
        with pytest.warns(FutureWarning, match=f"{old} has been renamed to {new}"):
            script = script_of(SLURMCluster, **{old: value})
        words = value if isinstance(value, str) else " ".join(value)
        assert ("#SBATCH --mem" not in script) if old == "header_skip" else words in script
    with pytest.warns(FutureWarning):
        script = script_of(SLURMCluster, job_extra=["--exclusive"], job_extra_directives=["--qos=high"])
    assert "--qos=high" in script and "--exclusive" not in script
    # SGE and LSF call the account a project: no warning there.
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # (distributed may warn of a busy dashboard port)
        assert read_script("sge", script_of(SGECluster, project="abc"))["-P"] == "abc"
        assert read_script("lsf", script_of(LSFCluster, project="abc"))["-P"] == "abc"


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"dashboard_address": ":12345"}, r"pass dashboard_address through scheduler_options"),
        ({"host": "login1"}, r"pass host through scheduler_options"),
        ({"job_cls": object}, r"job_cls: dask-hpc writes slurm's job scripts itself"),
        ({"resource_spec": "select=1"}, r"invalid resource_spec 'select=1': slurm does not read it"),
        ({"disk": "1GB"}, r"invalid disk '1GB': slurm does not read it \(it is HTCondor"),
        ({"walltime": "1 hour"}, r"invalid walltime"),
        ({"protocol": "tcp://", "security": True}, r"carries no encryption but security is given"),
        ({"no_such_keyword": 1}, r"unknown option no_such_keyword; known options: .*job_cpu"),
    ],
)
def test_refused_in_one_line_before_anything_starts(keywords: dict[str, Any], message: str) -> None:
    with pytest.raises((SessionError, SpecError), match=message):
        SLURMCluster(interface="lo", **keywords)


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        # OAR would read a second -l as another choice of resources (a moldable job).
        ({"job_extra_directives": ["-l /nodes=2"]}, r"OAR reads a second -l as another choice"),
        ({"job_extra_directives": ["-l walltime=2:00:00"]}, r"sets the walltime: give it with --walltime"),
        ({"resource_spec": "/nodes=1/core=4,walltime=1"}, r"holds a walltime"),
        ({"memory_per_core_property_name": "mem core"}, r"must be the name of an OAR resource property"),
        ({"log_directory": "/scratch/it's"}, r"oar cannot take ' in a path"),
        ({"job_name": "my'job"}, r"oar cannot take"),
        ({"job_cpu": 4}, r"invalid job_cpu 4: oar does not read it"),
    ],
)
def test_oar_refuses_in_one_line(keywords: dict[str, Any], message: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises((SessionError, SpecError), match=message):
            OARCluster(interface="lo", **keywords)


def test_the_base_class_is_not_a_cluster() -> None:
    with pytest.raises(SessionError, match="use SLURMCluster, PBSCluster"):
        JobQueueCluster()


def test_a_bare_walltime_is_read_as_each_batch_system_reads_it() -> None:
    assert read_script("slurm", script_of(SLURMCluster, walltime="90"))["time"] == 90 * 60
    assert read_script("lsf", script_of(LSFCluster, walltime="90"))["-W"] == 90 * 60
    assert read_script("pbs", script_of(PBSCluster, walltime="3600"))["walltime"] == 3600
    assert read_script("sge", script_of(SGECluster, walltime=1500000))["h_rt"] == 1500000
    assert read_script("oar", script_of(OARCluster, walltime="2"))["walltime"] == 2 * 3600
    assert read_script("oar", script_of(OARCluster, walltime="01:30"))["walltime"] == 90 * 60
    assert read_script("moab", script_of(MoabCluster, walltime="3600"))["walltime"] == 3600
    with pytest.raises(SpecError, match="a bare number is ambiguous"):  # ours: no system to ask
        dask_hpc.BatchCluster("slurm", scheduler="local", walltime="90", interface="lo", name="bare")


def test_sge_asks_for_a_parallel_environment_only_where_the_site_named_one(
    own_config: dict[str, Path],
) -> None:
    assert "-pe" not in read_script("sge", script_of(SGECluster, cores=8))
    (own_config["site"] / "dask-hpc.yaml").write_text(
        yaml.safe_dump({"dask-hpc": {"sge-parallel-environment": "mpi"}})
    )
    assert read_script("sge", script_of(SGECluster, cores=8))["-pe"] == "mpi 8"


def test_htcondor_keywords() -> None:
    job = read_script(
        "htcondor",
        script_of(HTCondorCluster, disk="2GB", job_directives_skip=["RequestMemory"], cores=2),
    )
    assert job["requestdisk"] == 2 * 10**9 // 1024 and job["requestcpus"] == 2
    assert "requestmemory" not in job
    system = get_system(
        "htcondor", {"submit-command-extra": ["-name", "s1"], "cancel-command-extra": "-pool p"}
    )
    assert system.submit_argv(Path("/x.sub")) == ["condor_submit", "-name", "s1", "-terse", "/x.sub"]
    assert system.cancel_argv(["1.0"]) == ["condor_rm", "-pool", "p", "1.0"]


def test_lsf_keywords() -> None:
    job = read_script("lsf", script_of(LSFCluster, ncpus=4, mem="12GB", lsf_units="gb", cores=2))
    assert job["-n"] == 4 and job["-M"] == 12 * 2**30
    assert "rusage[mem=12GB]" in " ".join(job["-R"])
    system = get_system("lsf", {"lsf-use-stdin": False})
    assert not system.script_on_stdin and system.submit_argv(Path("/j.sh")) == ["bsub", "/j.sh"]
    assert get_system("lsf").script_on_stdin and get_system("lsf").submit_argv(Path("/j.sh")) == ["bsub"]


def test_oar_warns_as_dask_jobqueue_when_no_memory_property_is_named() -> None:
    with pytest.warns(UserWarning, match="OAR is not asked for the memory.*memory_per_core_property_name="):
        script_of(OARCluster, cores=4, memory="16GB")
    with warnings.catch_warnings():
        # Only ours: distributed warns of a dashboard port in use when another cluster runs here.
        warnings.filterwarnings("error", message="worker jobs: OAR")
        job = read_script(
            "oar", script_of(OARCluster, cores=4, memory="16GB", memory_per_core_property_name="memcore")
        )
        assert job["-p"] == {f"memcore>={math.ceil(16e9 / 4 / 2**20)}"}
        assert "-p" not in read_script(
            "oar", script_of(OARCluster, memory_per_core_property_name="not_applicable")
        )


def test_oar_keywords_as_oarsub_reads_them() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        job = read_script(
            "oar",
            script_of(OARCluster, resource_spec="/nodes=2/core=8", project="pr1", job_name="dask-w"),
        )
    # oarsub takes the rest of the line as the value, word for word: no quotes.
    assert job["-l"] == {"nodes": 2, "core": 8} and job["--project"] == "pr1" and job["-n"] == "dask-w"
    system = get_system("oar")
    assert system.submit_argv(Path("/s/job.sh")) == ["oarsub", "-S", "/s/job.sh"]
    assert system.query_argv(["5", "6"]) == ["oarstat", "-f", "-j", "5", "-j", "6"]


def test_moab_submits_with_msub_and_cancels_with_canceljob() -> None:
    system = get_system("moab")
    assert system.submit_argv(Path("/s/job.sh")) == ["msub", "/s/job.sh"]
    assert system.cancel_argv(["4711"]) == ["canceljob", "4711"]
    # msub answers the resource manager's id (often after an empty line); Moab's own is refused.
    assert system.parse_job_id("\n4711\n") == "4711"
    assert system.parse_job_id("4711.torque01.example.org\n") == "4711.torque01.example.org"
    with pytest.raises(ParseError):
        system.parse_job_id("\nMoab.12\n")


def test_the_scheduler_options_and_class_are_distributeds() -> None:
    from distributed import Scheduler

    class Mine(Scheduler):  # type: ignore[misc]
        pass

    with SLURMCluster(
        interface="lo", scheduler_options={"dashboard_address": "127.0.0.1:0"}, scheduler_cls=Mine
    ) as c:
        assert type(c._scheduler) is Mine
        assert c._scheduler is not None and c._scheduler.http_server.port != 8787
    with pytest.raises(SessionError, match="scheduler_options are for a scheduler in this process"):
        SLURMCluster(scheduler="job", scheduler_options={"port": 8786})


def test_silence_logs_quiets_distributeds_lines_while_the_cluster_lives() -> None:
    handler = logging.StreamHandler()
    handler.setLevel(logging.INFO)
    logging.getLogger("distributed").addHandler(handler)
    try:
        with SLURMCluster(interface="lo"):
            assert handler.level == logging.ERROR  # dask-jobqueue's silence_logs="error"
        assert handler.level == logging.INFO
        with SLURMCluster(interface="lo", silence_logs=False):
            assert handler.level == logging.INFO
    finally:
        logging.getLogger("distributed").removeHandler(handler)


def test_security_true_and_tls_protocol_give_the_session_tls() -> None:
    with SLURMCluster(interface="lo", security=True) as cluster:
        assert cluster.scheduler_address.startswith("tls://") and cluster.security is not None
        assert "--tls-ca-file" in cluster.job_script()
    with SLURMCluster(interface="lo", protocol="tls://") as cluster:
        assert cluster.scheduler_address.startswith("tls://")


def test_a_local_directory_names_the_nodes_variables(tmp_path: Path) -> None:
    """``$TMPDIR`` is the node's, as dask-jobqueue's unquoted command line has it; the rest
    of the command stays literal. Run as the job's shell runs it, with the worker replaced
    by printf."""
    script = script_of(SLURMCluster, local_directory="$TMPDIR/dask", worker_extra_args=["--name-x", "a b"])
    line = next(line for line in script.splitlines() if " -m dask_hpc.worker " in line)
    words = subprocess.run(
        ["bash", "-c", "printf '%s\\n' " + line.split(" -m ", 1)[1]],
        env={"TMPDIR": "/node/tmp", "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    assert words[words.index("--local-directory") + 1] == "/node/tmp/dask"
    assert words[-2:] == ["--name-x", "a b"]
    assert read_worker(script)["local-directory"] == "$TMPDIR/dask"


def test_asynchronous_as_in_dask_jobqueue() -> None:
    """``async with SLURMCluster(asynchronous=True)``: started by ``await``, on the caller's
    event loop; what asks the keeper is awaitable (it answers on that same loop)."""
    import asyncio

    async def main() -> None:
        cluster = SLURMCluster(asynchronous=True, interface="lo")
        assert cluster.scheduler_address == "<Not Connected>"  # not started yet, as in distributed
        async with cluster:
            assert cluster.scheduler_address.startswith("tcp://127.")
            assert "--nworkers" in cluster.job_script()
            report = await cluster.status_report()
            assert report.name == cluster.session.name and report.jobs == []
            await cluster.scale(jobs=0)
            with pytest.raises(SessionError, match=r"await cluster\.status_report"):
                cluster.workers  # noqa: B018

    asyncio.run(asyncio.wait_for(main(), 60))


def test_sge_without_a_parallel_environment_keeps_every_other_line(tmp_path: Path) -> None:
    """No -pe (as dask-jobqueue) must not cost a line that merely contains "-pe"."""
    job = read_script(
        "sge",
        script_of(
            SGECluster,
            cores=4,
            memory="8GB",
            job_name="dask-peak",
            queue="gpu-pe.q",
            log_directory=str(tmp_path / "my-perf"),
        ),
    )
    assert (job["-N"], job["-q"], job["-o"]) == ("dask-peak", "gpu-pe.q", str(tmp_path / "my-perf"))
    assert "-pe" not in job
    assert job["mem_free"] == math.ceil(8 * 10**9 / 2**20) * 2**20  # one slot: the whole memory


def test_dask_config_set_in_this_process_is_read_as_dask_jobqueue_reads_it() -> None:
    import dask

    with dask.config.set({"jobqueue.slurm.queue": "fromset", "jobqueue.slurm.cores": 3}):
        job = read_script("slurm", script_of(SLURMCluster))
    assert (job["partition"], job["cpus-per-task"]) == ("fromset", 3)
    with dask.config.set({"jobqueue.slurm-gpu.cores": 2}):
        assert read_script("slurm", script_of(SLURMCluster, config_name="slurm-gpu"))["cpus-per-task"] == 2
    with pytest.raises(ConfigError, match=r"config_name 'slurm_gpu': no jobqueue.slurm_gpu section"):
        SLURMCluster(interface="lo", config_name="slurm_gpu")


def test_a_deprecated_name_in_jobqueue_yaml_yields_to_the_new_one(own_config: dict[str, Path]) -> None:
    section = {
        "account": "newacct",
        "project": "oldproj",
        "job-extra-directives": ["--exclusive"],
        "job-extra": ["--constraint=old"],
        "extra": ["--resources", "OLD=1"],
    }
    (own_config["user"] / "jobqueue.yaml").write_text(yaml.safe_dump({"jobqueue": {"slurm": section}}))
    with pytest.warns(FutureWarning, match="job-extra has been renamed to job-extra-directives"):
        script = script_of(SLURMCluster)
    job = read_script("slurm", script)
    assert job["account"] == "newacct" and job["exclusive"] is True and "constraint" not in job
    assert read_worker(script)["resources"] == "OLD=1"  # the old name where the new one has none


def test_htcondor_has_no_30_minute_walltime_and_its_commands_ignore_case() -> None:
    job = read_script("htcondor", script_of(HTCondorCluster, job_extra_directives={"RequestMemory": "4000"}))
    assert job["periodicremove"].endswith(f"> {7 * 24 * 3600})")
    assert job["requestmemory"] == 4000  # the user's, in place of ours (request_memory is RequestMemory)
    with pytest.raises(SpecError, match="sets environment, which dask-hpc writes to run the worker"):
        HTCondorCluster(interface="lo", job_extra_directives={"Environment": '"FOO=bar"'})


def test_pbs_account_from_the_environment_as_dask_jobqueue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PBS_ACCOUNT", "P123")
    assert read_script("pbs", script_of(PBSCluster))["-A"] == "P123"
    assert read_script("pbs", script_of(PBSCluster, account="mine"))["-A"] == "mine"


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"security": "yes"}, r"invalid security 'yes': True"),
        ({"silence_logs": "loud"}, r"invalid silence_logs 'loud': a level"),
        ({"scheduler_options": "x"}, r"invalid scheduler_options 'x': a mapping"),
        ({"scheduler_options": {"protocol": "tls"}}, r"scheduler_options\['protocol'\]: give protocol="),
        ({"processes": 10, "memory": "20GB"}, r"invalid cores 'not given': processes=10 need as many cores"),
        ({"wallclock": "1:00:00"}, r"unknown option wallclock \(did you mean walltime\?\)"),
        # dask-jobqueue reads any non-empty string as true: "no" would keep the nanny there
        ({"nanny": "no"}, r"invalid nanny 'no': must be True or False"),
    ],
)
def test_a_cluster_keyword_of_the_wrong_kind_is_one_line(keywords: dict[str, Any], message: str) -> None:
    with pytest.raises((SessionError, SpecError), match=message):
        SGECluster(interface="lo", **keywords)


def test_a_cluster_that_ran_no_job_leaves_no_session_behind() -> None:
    """One session per cluster (as dask-jobqueue makes one cluster per call): those that never
    submitted a job are removed on close; a named one stays, as dask-hpc's sessions do."""
    with SLURMCluster(interface="lo") as cluster:
        directory = cluster.session.directory
        assert directory.is_dir() and cluster.job_script()
    assert not directory.exists()
    with SLURMCluster(interface="lo", name="mine") as named:
        directory = named.session.directory
    assert directory.is_dir()


def test_distributeds_logs_stay_quiet_until_the_last_cluster_closes() -> None:
    handler = logging.StreamHandler()
    handler.setLevel(logging.INFO)
    logging.getLogger("distributed").addHandler(handler)
    try:
        first, second = SLURMCluster(interface="lo"), SLURMCluster(interface="lo")
        first.close()  # not the last: still quiet
        assert handler.level == logging.ERROR
        second.close()
        assert handler.level == logging.INFO
    finally:
        logging.getLogger("distributed").removeHandler(handler)


def test_a_name_used_before_starts_with_no_jobs_and_keeps_the_old_ledger(tmp_path: Path) -> None:
    """BatchCluster(name=...) again after a past life (a crash left its jobs live in the
    ledger): the new keeper must not count them, and the old ledger stays beside, as `up`."""
    from dask_hpc.state.ledger import JobRecord, load_ledger, save_ledger
    from dask_hpc.state.session import Session

    session = Session("again")
    session.prepare()
    save_ledger(session.ledger_file, {"41": JobRecord("41", "dask-worker", 1, 3600, submitted=1.0)})
    with SLURMCluster(interface="lo", name="again") as cluster:
        assert cluster.status_report().keeper.jobs == []  # type: ignore[union-attr]
    (aside,) = session.directory.glob("jobs-*.json")
    assert list(load_ledger(aside)) == ["41"]


def test_a_clusters_pools_are_checked_when_it_is_made_and_sent_with_their_scale(
    own_config: dict[str, Path],
) -> None:
    """BatchCluster(pools=...) (issue 23): a pool whose options this system cannot take is
    refused in one line before anything starts; a good one's options go with its scale."""
    with pytest.raises(SpecError, match="invalid gpus 3"):
        dask_hpc.BatchCluster(
            "slurm",
            scheduler="local",
            interface="lo",
            name="p1",
            pools={"gpu": {"gpus": 3, "processes": 2, "cores": 2}},
        )
    with dask_hpc.BatchCluster(
        "slurm", scheduler="local", interface="lo", name="p2", pools={"himem": {"memory": "8GiB"}}
    ) as cluster:
        assert cluster._pools == {"himem": {"memory": "8GiB", "pool": "himem"}}
        # A pool pools= did not name (a typo) made a pool of the session's options: refused.
        for ask in (lambda: cluster.scale(1, pool="himme"), lambda: cluster.adapt(0, 2, pool="himme")):
            with pytest.raises(
                SpecError, match=r"invalid pool 'himme': pools= names the pools of this cluster"
            ):
                ask()
