"""The suite passes however it was started (tests/hygiene.py).

A run started from a shell in the background inherits SIGINT ignored; a CI
runner may give a closed or silent stdin; a user's shell may set a 077 umask,
another HOME, a locale that does not exist, ``DASK_*``, ``OMPI_*`` or the
variables of the batch job it runs in. Here a pytest is started with all of
that at once, and must pass the same tests as a plain run: a probe of what a
test and its children see, and the Ctrl-C test that once failed only when the
suite ran in the background.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
from pathlib import Path

import dask.config
import pytest

from .hygiene import FOREIGN_NAMES, FOREIGN_PREFIXES

ROOT = Path(__file__).resolve().parent.parent

#: Each value says "hostile" so that the probe can tell it leaked.
HOSTILE_ENV = {
    "HOME": "/nonexistent-hostile-home",
    "LANG": "xx_XX.hostile",
    "LC_ALL": "xx_XX.hostile",
    "DASK_DISTRIBUTED__COMM__DEFAULT_SCHEME": "hostile",
    "DASK_HPC_SESSIONS": "/nonexistent-hostile-sessions",
    "DASK_HPC_LOCAL_SPOOL": "/nonexistent-hostile-spool",
    "OMPI_MCA_btl": "hostile",
    "PMIX_NAMESPACE": "hostile",
    "SLURM_JOB_ID": "4711",
    "SLURM_JOB_NAME": "hostile",
    "SGE_ROOT": "/nonexistent-hostile-sge",
    "JOB_ID": "4711",
    "PBS_JOBID": "4711.hostile",
    "LSB_JOBID": "4711",
    "FORCE_COLOR": "1",
    "TERM": "xterm-hostile",
    "COLUMNS": "20",
    "XDG_CONFIG_HOME": "/nonexistent-hostile-config",
    "USER": "hostile",
    "LOGNAME": "hostile",
    "http_proxy": "http://hostile.invalid:3128",
    "HTTPS_PROXY": "http://hostile.invalid:3128",
    "TMPDIR": "/nonexistent-hostile-tmp",
    "PYTHONWARNINGS": "error::hostile",
}

CHILD_PROBE = """
import json, os, signal
print(json.dumps({
    "sigint": str(signal.getsignal(signal.SIGINT)),
    "ignored": [s.name for s in (signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD,
                                 signal.SIGUSR1) if signal.getsignal(s) is signal.SIG_IGN],
    "blocked": sorted(s.name for s in signal.pthread_sigmask(signal.SIG_BLOCK, set())),
    "umask": os.umask(0o022),
    "stdin": os.readlink("/proc/self/fd/0"),
    "cwd": os.getcwd(),
    "env": dict(os.environ),
}))
"""


def test_a_test_and_its_children_start_neutral(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """What every test may rely on, seen from a child process (as the product's commands see it)."""
    done = subprocess.run([sys.executable, "-c", CHILD_PROBE], capture_output=True, text=True, timeout=30)
    child = json.loads(done.stdout)
    assert child["sigint"] == str(signal.default_int_handler)  # Python's, installed over SIG_DFL
    assert child["ignored"] == [] and child["blocked"] == []
    assert child["umask"] == 0o022
    if request.config.getoption("capture") != "no":
        assert child["stdin"] == "/dev/null"
    assert Path(child["cwd"]) == tmp_path
    env = child["env"]
    assert {k: v for k, v in env.items() if "hostile" in v or v.startswith("4711")} == {}
    # Only what the suite sets itself (LC_ALL; SGE_* once the sge_up fixture ran; the run's
    # mark for its check of processes left behind, tests/strays.py).
    foreign = {k for k in env if k.startswith(FOREIGN_PREFIXES) or k in FOREIGN_NAMES}
    assert foreign <= {"LC_ALL", "LANG", "SGE_ROOT", "SGE_CELL", "DASK_HPC_TEST_RUN"}
    assert env["LC_ALL"] == "C.UTF-8"
    assert env["USER"] == env["LOGNAME"] == pwd.getpwuid(os.geteuid()).pw_name
    home = Path(env["HOME"])
    assert home.is_dir() and os.access(home, os.W_OK) and home.name.startswith("dask-hpc-tests-home-")
    # dask in this process read no outside configuration either.
    import distributed  # noqa: F401  (its defaults join dask's configuration)

    assert dask.config.get("distributed.comm.default-scheme") == "tcp"


def _started_badly() -> None:
    """As a background job of a non-interactive shell, and worse: signals ignored and blocked."""
    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGCHLD, signal.SIGUSR2})
    os.umask(0o077)


@pytest.mark.session  # the Ctrl-C test in it starts a session
@pytest.mark.timeout(240)
def test_the_suite_passes_however_it_was_started(tmp_path: Path) -> None:
    tests = [
        f"{ROOT}/tests/test_hygiene.py::test_a_test_and_its_children_start_neutral",
        f"{ROOT}/tests/sessions/test_bad_input.py::test_ctrl_c_while_waiting_cancels_the_scheduler_job",
    ]
    env = {"PATH": os.environ["PATH"], "CI": os.environ.get("CI", ""), **HOSTILE_ENV}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT)]
    argv += ["-c", str(ROOT / "pyproject.toml"), "--basetemp", str(tmp_path / "inner"), *tests]
    proc = subprocess.Popen(
        argv,
        cwd="/",
        env=env,
        stdin=subprocess.PIPE,  # open, and never written: a child that reads it would wait forever
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_started_badly,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=200)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the badly started pytest hung:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-4000:]
    assert "2 passed" in out, out[-2000:]
