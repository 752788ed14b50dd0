"""The site's caps on a user's jobs, set for real (issue 22): SLURM's association limits with
sacctmgr (accounting by slurmdbd over MariaDB, scripts/local-slurm), Grid Engine's max_u_jobs
with qconf. Read, respected by add and adapt, and said in one line with the way out."""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dask_hpc.spec import JobSpec
from dask_hpc.systems import get_system

from .conftest import HPC, bring_up, live_jobs, poll

pytestmark = pytest.mark.timeout(240)


def sacctmgr(*args: str) -> None:
    subprocess.run(["sacctmgr", "--immediate", *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def slurm_limit(setting: str) -> Iterator[None]:
    """``sacctmgr modify user root set <setting>`` for the test, undone after it."""
    name = setting.split("=")[0]
    sacctmgr("modify", "user", "root", "set", setting)
    try:
        yield
    finally:
        sacctmgr("modify", "user", "root", "set", f"{name}=-1")


@pytest.mark.slurm
def test_slurm_max_submit_jobs_is_read_respected_and_said(
    request: pytest.FixtureRequest, hpc_for: Callable[[str], HPC]
) -> None:
    bring_up("slurm", request)
    hpc = hpc_for("slurm")
    name = "capped"
    slurm = get_system("slurm")
    # A job past a partition's limit on one job (short: MaxTime=00:10:00, set by
    # scripts/local-slurm) is refused in one line before anything is submitted: by up...
    refused = hpc.up(name, "--queue", "short", "--walltime", "1h", check=False)
    assert refused.returncode != 0 and slurm.user_jobs() == 0, refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert (
        "a worker job with a walltime of 01:00:00 would pass the site's limit "
        "MaxTime=00:10:00 (partition short)" in line
    )
    assert "(--walltime 00:10:00)" in line
    with slurm_limit("MaxSubmitJobs=5"):  # set before up: the keeper reads the caps when it starts
        hpc.up(name)
        # ... and by add, for a job unlike the session's.
        refused = hpc("add", "1", "--name", name, "--queue", "short", "--walltime", "1h", check=False)
        assert refused.returncode != 0 and "MaxTime=00:10:00 (partition short)" in refused.stderr
        assert not live_jobs(hpc.status(name))
        mine = slurm.user_jobs()  # the scheduler's job, and whatever else root has in the queue
        assert mine is not None and 1 <= mine < 5, f"root has {mine} jobs queued: no room for a cap of 5"
        room = 5 - mine
        caps = slurm.caps()
        assert [(c.limit, c.running_only) for c in caps] == [(5, False)]
        assert caps[0].words == "MaxSubmitJobs=5 (association of root in account dask-hpc)"
        asked = room + 1
        refused = hpc("add", str(asked), "--name", name, "--walltime", "5m", "--memory", "1GB", check=False)
        assert refused.returncode != 0
        (line,) = refused.stderr.strip().splitlines()
        assert "MaxSubmitJobs=5 (association of root in account dask-hpc)" in line
        # What root has in the queue as the keeper counted it, a moment after our count: a job of
        # an earlier test may still be leaving the queue (its line says so), or another come.
        counted = re.search(r"root has (\d+) in the queue now, so at most (\d+) more", line)
        assert counted and int(counted[1]) >= 1 and int(counted[2]) == 5 - int(counted[1]), line
        assert abs(int(counted[1]) - mine) <= 1, (line, slurm.user_jobs())
        room = int(counted[2])
        assert not live_jobs(hpc.status(name))  # nothing was submitted
        # The way out, as the line gives it: the workers asked for in the jobs that fit (one
        # array), more workers a job on one node (or more nodes a job: the other way it gives),
        # with the add's own walltime and memory. Run as printed.
        way_out = re.search(
            rf"For (\d+) workers in (\d+) jobs: dask-hpc add \2 --name {name} --nodes \d+ .* or "
            rf"dask-hpc (add \2 --name {name} --cores .*?) \(\d+ workers a node, (\d+) workers\)",
            line,
        )
        assert way_out and int(way_out[1]) == asked and int(way_out[2]) <= room, line
        assert int(way_out[4]) >= asked and "--walltime 00:05:00" in way_out[3], line
        hpc(*shlex.split(way_out[3]))
        report = hpc.status(name)
        assert len(live_jobs(report)) == int(way_out[2]) and len({j["array"] for j in report["jobs"]}) == 1
        poll("the workers asked for", lambda: hpc.status(name)["workers"] >= asked, 120)
        # adapt asks for more than the cap leaves: it stays at the cap, and status says so.
        hpc("remove", way_out[2], "--name", name)
        hpc("adapt", "--min", "8", "--max", "8", "--name", name)
        poll("adapt to reach the cap", lambda: len(live_jobs(hpc.status(name))) == room or None, 60)
        text = hpc("status", "--name", name).stdout
        assert f"held back by the site's cap: at most {room} jobs by MaxSubmitJobs=5" in text, text
    hpc("down", "--name", name)


@pytest.mark.slurm
def test_slurm_max_jobs_refuses_what_could_never_run_and_gives_the_one_command_for_the_workers(
    request: pytest.FixtureRequest, hpc_for: Callable[[str], HPC]
) -> None:
    """Summit's case (5 running jobs a user) at MaxJobs=3: the scheduler's job is one, so
    `add 6` could run 2 jobs and leave 4 waiting for the workers' walltimes. It is refused
    in one line; its first way out (more nodes a job, launched by srun) is run as printed
    and brings the 6 workers; adapt stays at 2 jobs and status says why."""
    bring_up("slurm", request)
    hpc = hpc_for("slurm")
    name = "running-capped"
    with slurm_limit("MaxJobs=3"):
        hpc.up(name)
        refused = hpc("add", "6", "--name", name, "--walltime", "5m", "--memory", "512MiB", check=False)
        assert refused.returncode != 0
        (line,) = refused.stderr.strip().splitlines()
        assert "could not all run at once under the site's cap MaxJobs=3 (association of root" in line
        assert "at most 2 more could run" in line, line
        assert not live_jobs(hpc.status(name))  # nothing was submitted
        way_out = re.search(
            rf"For 6 workers in 2 jobs: dask-hpc (add 2 --name {name} --nodes 3 .*?) "
            r"\(3 nodes a job, 6 workers\)",
            line,
        )
        assert way_out and "--memory 512MiB --walltime 00:05:00" in way_out[1], line
        hpc(*shlex.split(way_out[1]))
        poll("the 6 workers, on 3 nodes a job", lambda: hpc.status(name)["workers"] >= 6, 120)
        report = hpc.status(name)
        assert len(live_jobs(report)) == 2, report
        hpc("remove", "2", "--name", name)
        hpc("adapt", "--min", "4", "--max", "4", "--name", name)
        poll("adapt to reach the cap", lambda: len(live_jobs(hpc.status(name))) == 2 or None, 60)
        text = hpc("status", "--name", name).stdout
        assert "held back by the site's cap: at most 2 jobs by MaxJobs=3" in text, text
    hpc("down", "--name", name)


@contextlib.contextmanager
def slurm_setting(entity: str, name: str, setting: str) -> Iterator[None]:
    """``sacctmgr modify <entity> <name> set <setting>`` (an account, a QOS) for the test, undone after it."""
    sacctmgr("modify", entity, name, "set", setting)
    try:
        yield
    finally:
        sacctmgr("modify", entity, name, "set", f"{setting.split('=')[0]}=-1")


@pytest.mark.slurm
def test_slurm_limits_of_the_account_above_and_of_the_qos_are_read(
    request: pytest.FixtureRequest, hpc_for: Callable[[str], HPC]
) -> None:
    """A Grp limit set on the account (every user's jobs below it, not shown on the user's
    row) caps add; a QOS's MaxWall refuses a walltime past it, and the account's MaxWall,
    inherited by the user's association, too: each in one line, before any job."""
    bring_up("slurm", request)
    hpc = hpc_for("slurm")
    name = "account-capped"
    slurm = get_system("slurm")
    with slurm_setting("qos", "normal", "MaxWall=00:20:00"):
        refused = hpc.up(name, "--walltime", "30m", check=False)
        assert refused.returncode != 0 and slurm.user_jobs() == 0, refused.stderr
        (line,) = refused.stderr.strip().splitlines()
        assert "a worker job with a walltime of 00:30:00 would pass the site's limit MaxWall=" in line
        assert "(QOS normal)" in line and "(--walltime 00:20:00)" in line, line
    with slurm_setting("account", "dask-hpc", "MaxWall=00:15:00"):
        words = [limit.words for limit in slurm.job_limits(JobSpec.from_options(walltime="1h"))]
        assert any(
            w.startswith("MaxWall=") and "(association of root in account dask-hpc)" in w for w in words
        )
    with slurm_setting("account", "dask-hpc", "GrpSubmitJobs=4"):
        caps = slurm.caps()
        assert [(c.limit, c.running_only, c.words) for c in caps] == [
            (4, False, "GrpSubmitJobs=4 (account dask-hpc, all jobs below it)")
        ]
        hpc.up(name)
        refused = hpc("add", "4", "--name", name, "--walltime", "5m", check=False)
        assert refused.returncode != 0
        (line,) = refused.stderr.strip().splitlines()
        assert "GrpSubmitJobs=4 (account dask-hpc, all jobs below it)" in line, line
        assert not live_jobs(hpc.status(name))  # nothing was submitted
    hpc("down", "--name", name)


@contextlib.contextmanager
def partition_qos(partition: str, qos: str, *settings: str) -> Iterator[None]:
    """A QOS made for the test and attached to ``partition`` (``scontrol update``, as a site's
    ``QOS=`` on the partition's line), both undone after it."""
    sacctmgr("add", "qos", qos, "set", *settings)
    try:
        # slurmdbd tells slurmctld of the new QOS a moment later: until then scontrol says
        # it does not know it.
        poll(
            f"slurmctld to know QOS {qos}",
            lambda: (
                subprocess.run(
                    ["scontrol", "update", f"PartitionName={partition}", f"QOS={qos}"],
                    capture_output=True,
                    timeout=60,
                ).returncode
                == 0
            ),
            30,
        )
        try:
            yield
        finally:
            scontrol("update", f"PartitionName={partition}", "QOS=")
    finally:
        sacctmgr("delete", "qos", qos)


def scontrol(*args: str) -> None:
    subprocess.run(["scontrol", *args], check=True, capture_output=True, timeout=60)


@pytest.mark.slurm
def test_slurm_partition_qos_comes_first_and_counts_the_partitions_jobs(
    request: pytest.FixtureRequest, hpc_for: Callable[[str], HPC]
) -> None:
    """A QOS attached to a partition binds every job there before the job's own QOS and the
    association (SLURM's hierarchy): its MaxSubmitJobsPerUser and GrpTRES count the user's
    jobs in that partition (the scheduler's job in another is not one), SLURM itself refuses
    past it, and its MaxWall refuses a longer job in one line before anything is submitted."""
    bring_up("slurm", request)
    hpc = hpc_for("slurm")
    name = "partition-qos"
    slurm = get_system("slurm")
    settings = ("MaxSubmitJobsPerUser=2", "MaxWall=00:05:00", "GrpTRES=cpu=2", "Flags=DenyOnLimit")
    with partition_qos("short", "partcap", *settings):
        short = JobSpec.from_options(queue="short")
        assert [c.words for c in slurm.caps(short)] == [
            "MaxSubmitJobsPerUser=2 (QOS partcap of partition short)",
            "GrpTRES=cpu=2 (QOS partcap of partition short, all its users)",
        ]
        assert slurm.caps(JobSpec.from_options()) == []  # the default partition has no QOS
        hpc.up(name)  # in the default partition
        refused = hpc("add", "1", "--name", name, "--queue", "short", "--walltime", "6m", check=False)
        assert refused.returncode != 0
        (line,) = refused.stderr.strip().splitlines()
        assert "MaxWall=00:05:00 (QOS partcap of partition short)" in line and "--walltime 00:05:00" in line
        refused = hpc("add", "3", "--name", name, "--queue", "short", "--walltime", "5m", check=False)
        assert refused.returncode != 0
        (line,) = refused.stderr.strip().splitlines()
        # Both of the partition QOS's caps allow 2 (its CPUs are the first asked): the
        # scheduler's job, in the default partition, is not counted.
        assert "GrpTRES=cpu=2 (QOS partcap of partition short, all its users)" in line, line
        assert "at most 2 more could run" in line, line
        assert not live_jobs(hpc.status(name))
        # Two jobs of one CPU fit under GrpTRES=cpu=2: the scheduler's CPU, in the default
        # partition, is not the partition QOS's to count.
        hpc("add", "2", "--name", name, "--queue", "short", "--walltime", "5m", "--memory", "512MiB")
        assert len(live_jobs(hpc.status(name))) == 2
        # SLURM agrees: a third job in the partition is refused by sbatch itself.
        third = subprocess.run(
            ["sbatch", "--parsable", "--partition=short", "--time=1", "--wrap=true"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if third.returncode == 0:  # not left behind, whatever the outcome
            subprocess.run(["scancel", third.stdout.strip().split(";")[0]], capture_output=True, timeout=60)
        assert third.returncode != 0 and "QOSMaxSubmitJobPerUserLimit" in third.stderr, third.stderr
        hpc("down", "--name", name)


@pytest.mark.sge
@pytest.mark.parametrize("setting", ["max_u_jobs", "max_jobs"])  # the user's; the cluster's
def test_sge_job_caps_count_an_array_once(
    request: pytest.FixtureRequest, hpc_for: Callable[[str], HPC], tmp_path: Path, setting: str
) -> None:
    bring_up("sge", request)
    hpc = hpc_for("sge")
    global_conf = subprocess.run(["qconf", "-sconf"], check=True, capture_output=True, text=True).stdout
    # One "name value" a line (qconf continues long values with a backslash); qconf -Mconf
    # takes the configuration's name from the file's: "global".
    joined = re.sub(r"\\\n\s*", " ", global_conf)
    (tmp_path / "capped").mkdir()
    (tmp_path / "original").mkdir()
    capped, original = tmp_path / "capped" / "global", tmp_path / "original" / "global"
    capped.write_text(re.sub(rf"(?m)^{setting}\s+\d+", f"{setting}  2", joined))
    original.write_text(joined)
    subprocess.run(["qconf", "-Mconf", str(capped)], check=True, capture_output=True)
    try:
        caps = get_system("sge").caps()
        assert [(c.limit, c.arrays_count_once) for c in caps] == [(2, True)]
        name = "capped-sge"
        hpc.up(name)  # the scheduler's job is one: one more job (an array of any size) fits
        hpc("add", "3", "--name", name, "--walltime", "5m")
        refused = hpc("add", "1", "--name", name, check=False)
        assert refused.returncode != 0 and f"{setting}=2" in refused.stderr
        assert "an array counts once" in refused.stderr
        hpc("down", "--name", name)
    finally:
        subprocess.run(["qconf", "-Mconf", str(original)], check=True, capture_output=True)


@pytest.mark.sge
def test_sge_resource_quota_on_slots_bounds_what_runs_at_once(
    request: pytest.FixtureRequest, hpc_for: Callable[[str], HPC], tmp_path: Path
) -> None:
    """A resource quota set (qconf -Arqs) of 3 slots for each user: read with qconf -srqs,
    it bounds the jobs that run at once (one slot each, with no parallel environment), the
    scheduler's among them: `add 3` is refused in one line, `add 2` fits."""
    bring_up("sge", request)
    hpc = hpc_for("sge")
    quota = tmp_path / "max_user_slots"
    quota.write_text(
        "{\n   name         max_user_slots\n   description  NONE\n   enabled      TRUE\n"
        "   limit        users {*} to slots=3\n}\n"
    )
    # One left by an earlier run that was killed would make -Arqs refuse: it goes first.
    subprocess.run(["qconf", "-drqs", "max_user_slots"], capture_output=True, timeout=60)
    subprocess.run(["qconf", "-Arqs", str(quota)], check=True, capture_output=True, timeout=60)
    try:
        caps = get_system("sge").caps()
        assert [(c.limit, c.running_only, c.per, c.words) for c in caps] == [
            (3, True, "job", "slots=3 (resource quota max_user_slots: limit users {*} to slots=3; each user)")
        ]
        name = "quota-sge"
        hpc.up(name)
        refused = hpc("add", "3", "--name", name, "--walltime", "5m", check=False)
        assert refused.returncode != 0
        (line,) = refused.stderr.strip().splitlines()
        assert "could not all run at once under the site's cap slots=3 (resource quota max_user_slots" in line
        assert "at most 2 more could run" in line, line
        assert not live_jobs(hpc.status(name))  # nothing was submitted
        hpc("add", "2", "--name", name, "--walltime", "5m")
        assert len(live_jobs(hpc.status(name))) == 2
        hpc("down", "--name", name)
    finally:
        subprocess.run(["qconf", "-drqs", "max_user_slots"], capture_output=True, timeout=60)


@pytest.mark.sge
@pytest.mark.parametrize(
    ("pe", "line"), [("mpi", "has allocation_rule $fill_up"), ("nosuch", "does not know")]
)
def test_sge_several_nodes_need_a_parallel_environment_that_puts_the_cores_on_each_host(
    request: pytest.FixtureRequest, hpc_for: Callable[[str], HPC], pe: str, line: str
) -> None:
    """The local Grid Engine's mpi parallel environment fills hosts as slots come ($fill_up):
    `up --nodes 2` through it is refused in one line (qconf -sp read for real) before
    anything is submitted, as is a parallel environment Grid Engine does not know."""
    bring_up("sge", request)
    hpc = hpc_for("sge")
    hpc.env["DASK_DASK_HPC__SGE_PARALLEL_ENVIRONMENT"] = pe
    refused = hpc.up("several-nodes", "--nodes", "2", "--cores", "2", check=False)
    assert refused.returncode != 0
    (said,) = refused.stderr.strip().splitlines()
    assert said.startswith("error: invalid nodes 2: ") and line in said and "qconf -spl" in said, said
    assert not get_system("sge").user_jobs()
