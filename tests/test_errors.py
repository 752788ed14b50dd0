"""Every error of the tree survives a pickle round trip: the same type, message and fields.

Distributed sends an exception raised in a scheduler plugin, a worker or a task back
pickled; one that does not unpickle as itself reaches the user as another type, and the
CLI, which prints ours in one line, shows a traceback instead."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from dask_hpc import errors

EXAMPLES: dict[str, errors.DaskHPCError] = {
    "DaskHPCError": errors.DaskHPCError("something"),
    "SpecError": errors.SpecError("memory", "lots", "a size such as 4GiB"),
    "UnknownOptionError": errors.UnknownOptionError(["colour"], ["cores", "memory"]),
    "UnknownSystemError": errors.UnknownSystemError("moab", ["slurm", "pbs"]),
    "CommandError": errors.CommandError(["sbatch", "x.sh"], 1, "", "sbatch: error: no partition"),
    "CommandNotFoundError": errors.CommandNotFoundError(["qsub"], None, what="not installed"),
    "CommandTimeoutError": errors.CommandTimeoutError(["squeue"], None, what="no answer in 30 s"),
    "SubmitError": errors.SubmitError(["sbatch"], 1, "", "QOSMaxSubmitJobPerUserLimit"),
    "SubmitUnclearError": errors.SubmitUnclearError("no job id in 'Submitted'"),
    "WrongSystemError": errors.WrongSystemError("qstat here is Grid Engine's, not PBS's"),
    "ParseError": errors.ParseError("could not read squeue's line"),
    "NotInJobError": errors.NotInJobError("not in a job"),
    "DataError": errors.DataError("no files match '*.nc'"),
    "InterfaceError": errors.InterfaceError("ib9", ["eth0", "lo"], "this node"),
    "UnreachableInterfaceError": errors.UnreachableInterfaceError("this node", "2 nodes"),
    "SessionError": errors.SessionError("session 'a' is down"),
    "UnknownSessionError": errors.UnknownSessionError("b", ["a"], "/home/u/.dask-hpc/sessions"),
    "PartlySubmittedError": errors.PartlySubmittedError(
        ["4711", "4712"], 3, RuntimeError("QOSMaxSubmitJobPerUserLimit")
    ),
    "CapError": errors.CapError("4 more worker jobs would pass the site's cap MaxSubmitJobs=5"),
    "ProtocolError": errors.ProtocolError("this session's keeper does not take gpus in Add"),
    "ConfigError": errors.ConfigError("/etc/dask/dask-hpc.yaml: unknown setting dask-hpc.acount ('x')"),
    "WorldTooSmallError": errors.WorldTooSmallError("need at least 3 MPI ranks, got 2"),
    "RoleFailedError": errors.RoleFailedError("rank 2 (a worker) could not start: no such interface ib9"),
    "SchedulerUnreachableError": errors.SchedulerUnreachableError("no answer from tls://10.0.0.1:8786"),
}


def test_every_error_class_has_an_example() -> None:
    assert set(EXAMPLES) == set(errors.__all__)


def test_every_error_class_is_in_the_one_tree() -> None:
    """No module defines an error of its own: each is in dask_hpc.errors (with an example here)."""
    import importlib
    import pkgutil

    import dask_hpc

    for module in pkgutil.walk_packages(dask_hpc.__path__, "dask_hpc."):
        if not module.name.endswith("__main__"):  # __main__ modules run when imported
            importlib.import_module(module.name)

    def subclasses(cls: type) -> set[type]:
        return {c for s in cls.__subclasses__() for c in {s, *subclasses(s)}}

    ours = {c for c in subclasses(errors.DaskHPCError) if c.__module__.startswith("dask_hpc.")}
    assert {f"{c.__module__}.{c.__name__}" for c in ours} == {f"dask_hpc.errors.{n}" for n in EXAMPLES} - {
        "dask_hpc.errors.DaskHPCError"
    }


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_round_trip(name: str) -> None:
    from distributed.protocol import pickle as distributed_pickle

    error = EXAMPLES[name]
    for dumps, loads in [(pickle.dumps, pickle.loads), (distributed_pickle.dumps, distributed_pickle.loads)]:
        again = loads(dumps(error))
        assert type(again) is type(error)
        assert str(again) == str(error)
        assert again.args == error.args
        assert vars(again) == vars(error)


def test_round_trip_when_distributed_was_imported_first() -> None:
    """distributed installs tblib's exception pickling for the exception classes that exist
    when it is imported; classes defined later (ours, in a worker that imported distributed
    first) get Python's own, which calls the class with ``args``. A fresh process, in that order."""
    code = (
        "import pickle, distributed\n"
        "from tests.test_errors import EXAMPLES\n"
        "for e in EXAMPLES.values():\n"
        "    again = pickle.loads(pickle.dumps(e))\n"
        "    assert type(again) is type(e) and str(again) == str(e) and vars(again) == vars(e), e\n"
        "print(len(EXAMPLES))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip() == str(len(EXAMPLES))
