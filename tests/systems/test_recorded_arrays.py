"""Job arrays and caps of PBS Professional, LSF and HTCondor, on outputs published by real
sites and projects (issue 22): each array task is a job of its own, by the id our commands
give it. Where each output comes from, and what was adapted, is in tests/recorded/README.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from dask_hpc.systems import JobState, get_system
from dask_hpc.systems.base import JobStatus
from dask_hpc.systems.pbs import count_user_jobs, parse_server_caps

RECORDED = Path(__file__).resolve().parent.parent / "recorded"


def read(name: str) -> str:
    return (RECORDED / name).read_text()


def brief(status: JobStatus) -> tuple[JobState, str | None, int | None]:
    return status.state, status.node, status.exit_code


def fake_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **outputs: str) -> None:
    """Commands of a batch system we cannot run here: each prints a recorded output."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, recorded in outputs.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\ncat {RECORDED / recorded}\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


# ---- PBS Professional: subjobs 2596901[1..10].pbsserver of the array 2596901[].pbsserver ----

SUBJOBS = [f"2596901[{i}].pbsserver" for i in range(1, 11)]


def test_pbs_subjob_ids_are_the_ones_qstat_shows() -> None:
    """qsub answers 2596901[].pbsserver; its subjobs are 2596901[N].pbsserver, as qstat -t
    lists them (cut to the column's width there) and as qstat -f names them."""
    assert get_system("pbs").task_ids("2596901[].pbsserver\n", 10) == SUBJOBS
    listed = [line.split()[0] for line in read("pbs/qstat-t-array.txt").splitlines()[3:]]
    assert [job_id[:17] for job_id in SUBJOBS] == listed


def test_pbs_each_subjob_is_a_job_of_its_own() -> None:
    """qstat -f -x: finished subjobs are X with their Exit_status; the array's own entry is B."""
    parent = "2596901[].pbsserver"
    out = get_system("pbs").parse_query(read("pbs/qstat-f-x-array.txt"), [*SUBJOBS, parent])
    for job_id in SUBJOBS[:8]:
        assert brief(out[job_id]) == (JobState.COMPLETED, "hpc056", 0), job_id
    for job_id in SUBJOBS[8:]:
        assert brief(out[job_id]) == (JobState.RUNNING, "hpc056", None), job_id
    assert out[parent].state is JobState.RUNNING  # B: begun, some subjobs running


def test_pbs_subjobs_by_their_short_ids() -> None:
    out = get_system("pbs").parse_query(read("pbs/qstat-f-x-array.txt"), ["2596901[3]", "2596901[10]"])
    assert out["2596901[3]"].state is JobState.COMPLETED
    assert out["2596901[10]"].state is JobState.RUNNING
    assert out["2596901[3]"].job_id == "2596901[3]"


def test_pbs_query_of_subjobs_through_qstat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_commands(tmp_path, monkeypatch, qstat="pbs/qstat-f-x-array.txt")
    pbs = get_system("pbs")
    assert pbs.query_argv(SUBJOBS[:1]) == ["qstat", "-f", "-x", SUBJOBS[0]]
    out = pbs.query(SUBJOBS)
    assert [out[j].state for j in SUBJOBS] == [JobState.COMPLETED] * 8 + [JobState.RUNNING] * 2


def test_pbs_counts_running_subjobs_not_finished_ones_or_the_array(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """qstat -u jdar4135 -t: the array's own line (B) is not a job; X subjobs have finished.
    The state is the last but one column in the alternate and in the default layout."""
    assert count_user_jobs(read("pbs/qstat-u-t-array.txt")) == 2
    assert count_user_jobs(read("pbs/qstat-t-array.txt")) == 2
    fake_commands(tmp_path, monkeypatch, qstat="pbs/qstat-u-t-array.txt")
    assert get_system("pbs").user_jobs() == 2


def test_pbs_server_cap_of_one_user_among_many() -> None:
    """qmgr lists an entity limit one entry a line, each under the attribute's name (OpenPBS's
    encode_entlim): the user's own entry is any of them, not only the last."""
    text = read("pbs/qmgr-list-server-max_queued.txt")
    for user in ("user01", "user05", "user18"):
        caps = parse_server_caps(text, user)
        assert [(c.limit, c.running_only, c.words) for c in caps] == [
            (0, False, f"max_queued = [u:{user}=0] (qmgr list server)")
        ], user
    assert parse_server_caps(text, "alice") == []


def test_pbs_generic_cap_listed_before_a_users_own() -> None:
    """The same layout with PBS_GENERIC's entry first: every other user keeps it."""
    text = "Server aqua\n    max_queued = [u:PBS_GENERIC=20]\n    max_queued = [u:user05=0]\n"
    assert [c.limit for c in parse_server_caps(text, "bob")] == [20]
    assert [c.limit for c in parse_server_caps(text, "user05")] == [0]


# ---- LSF: elements 2667165[1..5] and 554997[1,3,5,7,9] -----------------------------------------


def test_lsf_array_elements_are_jobs_of_their_own() -> None:
    lsf = get_system("lsf")
    running_and_pending = lsf.task_ids("Job <2667165> is submitted to queue <bsc_es>.\n", 5)
    assert running_and_pending == [f"2667165[{i}]" for i in range(1, 6)]
    done = [f"554997[{i}]" for i in (1, 3, 5, 7, 9)]  # -J "helloarray[1-10:2]"
    out = lsf.parse_query(read("lsf/bjobs-json-array.txt"), [*running_and_pending, *done])
    assert brief(out["2667165[1]"]) == (JobState.RUNNING, "s14", None)  # EXEC_HOST 48*s14
    for job_id in running_and_pending[1:]:
        assert (out[job_id].state, out[job_id].reason) == (JobState.PENDING, None), job_id
    for job_id in done:
        assert brief(out[job_id]) == (JobState.COMPLETED, "compute030", 0), job_id
    assert lsf.query_argv(["554997[1]"])[-1] == "554997[1]"


# ---- HTCondor: procs 123.0, 123.1 and 123.2 of cluster 123 -----------------------------------


def test_htcondor_procs_of_one_cluster_are_jobs_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """condor_q -json has the held and the removed proc; the completed one is in the history."""
    condor = get_system("htcondor")
    procs = condor.task_ids("123.0 - 123.2\n", 3)
    assert procs == ["123.0", "123.1", "123.2"]
    queue = condor.parse_query(read("htcondor/condor_q-json-cluster.txt"), procs)
    assert queue["123.0"].state is JobState.UNKNOWN  # left the queue
    assert queue["123.1"].state is JobState.CANCELLED
    assert (queue["123.2"].state, queue["123.2"].reason) == (
        JobState.PENDING,
        "held: The credentials for the job are invalid",
    )
    fake_commands(
        tmp_path,
        monkeypatch,
        condor_q="htcondor/condor_q-json-cluster.txt",
        condor_history="htcondor/condor_history-json-cluster.txt",
    )
    out = condor.query(procs)
    assert brief(out["123.0"]) == (JobState.COMPLETED, None, 0)
    assert out["123.1"].state is JobState.CANCELLED
    assert out["123.2"].state is JobState.PENDING
