"""Session files: names, settings round trip, privacy, listing; log file names per system."""

from __future__ import annotations

from pathlib import Path

import pytest

from dask_hpc.errors import SessionError, UnknownSessionError
from dask_hpc.spec import JobSpec
from dask_hpc.state.session import Session, SessionConfig, list_sessions
from dask_hpc.systems import SYSTEMS


@pytest.mark.parametrize("name", ["", "../x", "a/b", "-x", "x" * 65, "a b"])
def test_invalid_names(name: str, tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="invalid session name"):
        Session(name, tmp_path)


def test_config_round_trip_and_privacy(tmp_path: Path) -> None:
    session = Session("climate-1", tmp_path)
    spec = JobSpec.from_options(cores=4, processes=2, environment=["A=1"], job_extra_directives=["--qos=x"])
    config = SessionConfig(
        "climate-1", "slurm", spec, spec.with_options(cores=1, processes=1), interface="ib0"
    )
    session.prepare()
    session.write_config(config.but(scheduler_job_id="77"))
    assert session.read_config() == config.but(scheduler_job_id="77")
    assert session.directory.stat().st_mode & 0o777 == 0o700
    assert session.config_file.stat().st_mode & 0o777 == 0o600
    assert list_sessions(tmp_path) == ["climate-1"]
    assert Session.at(session.directory).directory == session.directory


def test_unknown_session_lists_known_ones(tmp_path: Path) -> None:
    for name in ("b", "a"):
        s = Session(name, tmp_path)
        s.prepare()
        s.write_config(SessionConfig(name, "local", JobSpec(), JobSpec()))
    with pytest.raises(UnknownSessionError, match=r"no session 'c' in .*; sessions: a, b"):
        Session("c", tmp_path).read_config()


def test_scheduler_address_only_from_a_complete_file(tmp_path: Path) -> None:
    session = Session("s", tmp_path)
    session.prepare()
    assert session.scheduler_address() is None
    session.scheduler_file.write_text('{"address": "tcp://10.0.0.1:4242"')  # half written
    assert session.scheduler_address() is None
    session.scheduler_file.write_text('{"address": "tcp://10.0.0.1:4242"}')
    assert session.scheduler_address() == "tcp://10.0.0.1:4242"


@pytest.mark.parametrize(
    ("system", "job_id", "files"),
    [
        ("slurm", "123", ("w-123.out", "w-123.err")),
        ("local", "5", ("w-5.out", "w-5.err")),
        ("sge", "123", ("w.o123", "w.e123")),
        ("pbs", "123.pbs01", ("w.o123", "w.e123")),
        ("torque", "123.head", ("w.o123", "w.e123")),
        ("lsf", "123", ("123.out", "123.err")),
        ("htcondor", "123.0", ("123.0.out", "123.0.err")),
    ],
)
def test_log_file_names(system: str, job_id: str, files: tuple[str, str]) -> None:
    assert SYSTEMS[system]().log_files("w", job_id) == files


def test_batchcluster_shows_every_keyword_and_documents_it() -> None:
    """help(BatchCluster) and an editor show the keywords, each with its meaning: every job
    option and every session option is an explicit keyword, named in the docstring."""
    import inspect

    from dask_hpc.session.cluster import _OWN, BatchCluster
    from dask_hpc.spec import JobSpec

    parameters = inspect.signature(BatchCluster.__init__).parameters
    # pool: the session's own jobs are of no pool; pools= names the others (documented).
    options = [name for name in JobSpec.option_names() if name != "pool"]
    for name in [*options, *_OWN, "pools", "system", "name", "scheduler"]:
        assert name in parameters, name
        assert parameters[name].kind in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
        assert name in (BatchCluster.__doc__ or ""), f"{name} is not documented"
