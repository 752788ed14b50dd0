"""The keeper's requests and answers survive the wire as they are (distributed's RPC sends
msgpack, which makes tuples of lists), and a refusal arrives as the error the keeper raised."""

from __future__ import annotations

import msgpack
import pytest

from dask_hpc import errors
from dask_hpc.keeper import protocol
from dask_hpc.systems import JobState

from ..test_errors import EXAMPLES

REQUESTS: list[protocol.Request[object]] = [
    protocol.Add(3, {"walltime": "30m", "environment": ["A=1", "B=2"]}, keep=True),
    protocol.Register(["4711", "4712"], {"queue": "short"}),
    protocol.Remove(job_ids=["4711"]),
    protocol.Remove(2),
    protocol.Scale(0),
    protocol.Adapt(1, 20, options={"cores": 4}),
    protocol.Adapt(off=True),
    protocol.Adapt(2, None, interval=10.0, wait_count=5),
    protocol.Status(),
    protocol.Down(),
]

JOB = protocol.JobReport(
    job_id="4711",
    job_name="dask-worker",
    processes=2,
    walltime=1800,
    submitted=1.5,
    state=JobState.RUNNING,
    node="cn07",
    spec={"cores": 4, "environment": ["A=1"]},
    workers=2,
    walltime_left=1700.0,
    replace_in=None,
)
STATUS = protocol.KeeperStatus(
    address="tls://10.0.0.7:8786",
    dashboard="http://10.0.0.7:8787/status",
    dashboard_port=8787,
    interface=protocol.InterfaceReport("ib0", "10.0.0.7", "the interface of the default route"),
    submit_from="the scheduler's node",
    security="tls",
    adapt=protocol.AdaptBounds(1, 20),
    jobs=[JOB],
    workers=2,
    other_workers=0,
    threads=8,
    memory=16 * 2**30,
    processes=2,
    scheduler_walltime_left=None,
    recomputed=0,
    submit_trouble=protocol.SubmitTrouble(2, "sbatch: error: Invalid account", 10.0, False),
    last_refusal=protocol.LastRefusal("adapt", "sbatch: error: Invalid account", 2.5),
)
ANSWERS: list[tuple[protocol.Request[object], protocol.Answer]] = [
    (protocol.Add(2), protocol.Jobs(["1", "2"])),
    (protocol.Add(2), protocol.SubmitHere("#!/bin/bash\n", 2)),
    (protocol.Scale(5), protocol.SubmitHere("#!/bin/bash\n", 3)),
    (protocol.Down(), protocol.Jobs([], warning="job 3 still ending after cancel")),
    (protocol.Adapt(1, 20), protocol.Adapting(protocol.AdaptBounds(1, 20), "1 of 2 submitted")),
    (protocol.Adapt(off=True), protocol.Adapting(None)),
    (protocol.Adapt(interval=10.0, wait_count=5), protocol.Adapting(protocol.AdaptBounds(0, None, 10.0, 5))),
    (protocol.Status(), STATUS),
]


def over_the_wire(message: dict[str, object]) -> dict[str, object]:
    """As distributed's RPC delivers it: msgpack, lists read back as tuples."""
    return msgpack.loads(msgpack.dumps(message, use_bin_type=True), raw=False, use_list=False)


def test_every_request_has_a_handler_name_and_an_example() -> None:
    assert {type(r) for r in REQUESTS} == set(protocol.REQUESTS)
    assert len({kind.op for kind in protocol.REQUESTS}) == len(protocol.REQUESTS)
    assert all(kind.op.startswith("dask_hpc_") for kind in protocol.REQUESTS)


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_a_request_arrives_as_it_was_sent(request_: protocol.Request[object]) -> None:
    assert protocol.request_from(type(request_), over_the_wire(request_.to_message())) == request_


@pytest.mark.parametrize(("request_", "answer"), ANSWERS, ids=lambda x: type(x).__name__)
def test_an_answer_arrives_as_it_was_sent(
    request_: protocol.Request[object], answer: protocol.Answer
) -> None:
    assert protocol.answer_from(over_the_wire(protocol.answer_message(answer)), request_) == answer


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_refusal_is_raised_again_as_the_error_the_keeper_raised(name: str) -> None:
    error = EXAMPLES[name]
    with pytest.raises(type(error)) as raised:
        protocol.answer_from(over_the_wire(protocol.refusal(error)), protocol.Add(1))
    assert type(raised.value) is type(error) and str(raised.value) == str(error)
    assert vars(raised.value) == vars(error)


def test_a_refusal_this_side_cannot_unpickle_keeps_its_line() -> None:
    message = {"error": "something only a newer keeper knows", "raised": b"not a pickle"}
    with pytest.raises(errors.SessionError, match=r"^something only a newer keeper knows$"):
        protocol.answer_from(message, protocol.Status())


def test_another_versions_messages_are_one_clear_line() -> None:
    with pytest.raises(errors.ProtocolError, match="does not take gpus in Add: it runs another version"):
        protocol.request_from(protocol.Add, {"n": 1, "gpus": 2})
    with pytest.raises(errors.ProtocolError, match="Add sent to the keeper without what it needs"):
        protocol.request_from(protocol.Add, {})
    with pytest.raises(errors.ProtocolError, match="answered 'Jobs' where KeeperStatus was expected"):
        protocol.answer_from(protocol.answer_message(protocol.Jobs([])), protocol.Status())
    with pytest.raises(errors.ProtocolError, match="cannot read"):
        protocol.answer_from(None, protocol.Status())
    # A newer keeper's extra field in an answer is left out, not an error.
    newer = {**protocol.answer_message(protocol.Jobs(["1"])), "pool": "gpu"}
    assert protocol.answer_from(newer, protocol.Add(1)) == protocol.Jobs(["1"])


def test_a_job_report_carries_every_field_of_the_ledgers_record() -> None:
    """The keeper builds each JobReport from a JobRecord's fields: a field added to the
    ledger only would make every status a TypeError."""
    from dataclasses import fields

    from dask_hpc.state.ledger import JobRecord

    assert {f.name for f in fields(JobRecord)} <= {f.name for f in fields(protocol.JobReport)}


def test_status_json_without_a_scheduler_is_the_ledgers_jobs() -> None:
    """As before the protocol: without a keeper, a job is its ledger record, its workers (0)
    and its walltime left; no keeper, no replacement plan."""
    from dask_hpc.session.report import SchedulerReport, SessionStatus
    from dask_hpc.state.ledger import JobRecord

    record = JobRecord("4711", "dask-worker", 1, 3600, 1.0)
    job = protocol.JobReport.from_dict({**record.to_dict(), "walltime_left": None})
    report = SessionStatus(
        "a", "slurm", "/d", False, "tls", SchedulerReport("1", "running", None, "n1"), [job]
    )
    data = report.to_dict()
    assert set(data["jobs"][0]) == {*record.to_dict(), "workers", "walltime_left"}
    assert data["scheduler"] == {
        "job_id": "1",
        "state": "running",
        "reason": None,
        "node": "n1",
        "answering": False,
        "in_process": False,  # a job's scheduler, not BatchCluster(scheduler="local")'s
    }
    assert (data["workers"], data["threads"], data["memory"], data["adapt"], data["web"]) == (
        0,
        0,
        0,
        None,
        None,
    )
    # With a keeper: its fields beside the session's, the scheduler's address from it.
    live = SessionStatus(
        "a", "slurm", "/d", False, "tls", SchedulerReport("1", "running", None, "n1", True), [job], STATUS
    )
    assert {k for k in live.to_dict() if k not in data} == {
        "dashboard_port",
        "interface",
        "submit_from",
        "other_workers",
        "processes",
        "scheduler_walltime_left",
        "recomputed",
        "submit_trouble",
        "last_refusal",
        "capped",
        "pool_adapt",
        "pool_capped",
    }
