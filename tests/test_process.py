from __future__ import annotations

import sys

import pytest

from dask_hpc import _process
from dask_hpc.errors import CommandError, CommandNotFoundError, CommandTimeoutError, SubmitError


def test_run_returns_output() -> None:
    done = _process.run([sys.executable, "-c", "print('hi')"])
    assert (done.returncode, done.stdout) == (0, "hi\n")


def test_failure_carries_argv_code_and_stderr() -> None:
    with pytest.raises(SubmitError) as info:
        _process.run(
            [
                sys.executable,
                "-c",
                "import sys; sys.stderr.write('sbatch: error: invalid partition\\n'); sys.exit(1)",
            ],
            error=SubmitError,
            what="slurm refused the job",
        )
    error = info.value
    assert error.returncode == 1
    assert error.argv[0] == sys.executable
    assert "invalid partition" in error.stderr
    assert str(error).splitlines()[1].strip() == "sbatch: error: invalid partition"


def test_missing_program() -> None:
    with pytest.raises(CommandNotFoundError, match="no-such-program is not installed"):
        _process.run(["no-such-program", "--version"])


def test_timeout_is_an_error_not_a_hang() -> None:
    with pytest.raises(CommandTimeoutError, match=r"no answer within 0\.5 s"):
        _process.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)


def test_stdin_input() -> None:
    done = _process.run([sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"], input="abc")
    assert done.stdout.strip() == "ABC"


def test_check_false_returns_failures() -> None:
    done = _process.run([sys.executable, "-c", "raise SystemExit(4)"], check=False)
    assert done.returncode == 4
    assert isinstance(done.failure("it failed"), CommandError)
    assert str(done.failure("it failed")).startswith("it failed: ")


def test_starting_while_another_thread_changes_the_environment(tmp_path) -> None:
    """A thread importing numpy calls putenv/unsetenv; our children must still start.

    With the C ``environ`` handed to execve (env=None), about one start in four
    failed here with "[Errno 14] Bad address" (a CI failure of ``dask-hpc up``).
    """
    import os
    import threading

    stop = threading.Event()

    def churn() -> None:
        for i in range(10_000_000):  # bounded; ends when the starts are done
            if stop.is_set():
                return
            os.putenv(f"DASK_HPC_TEST_CHURN_{i % 50}", "x" * 100)
            os.unsetenv(f"DASK_HPC_TEST_CHURN_{(i + 25) % 50}")

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            assert _process.run(["true"], timeout=10).returncode == 0
            child = _process.start_child(["true"])
            assert child.wait(timeout=10) == 0
        pid = _process.spawn(["true"], stdout=tmp_path / "out")
        assert pid > 0
    finally:
        stop.set()
        thread.join(timeout=10)
