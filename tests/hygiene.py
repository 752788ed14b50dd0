"""Make the test run independent of how it was started.

A test must pass the same whether pytest was started from a terminal, from a
script in the background (``nohup make test &``: SIGINT and SIGQUIT arrive
*ignored*, and an ignored signal stays ignored across exec), by a CI runner
with a closed stdin, or by a user whose shell sets ``DASK_*``, ``OMPI_*`` or a
02 umask. :func:`neutral_start` runs first thing in ``tests/conftest.py``,
before dask reads its configuration, and puts the process into one known
state that every child inherits:

- signals: SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1/2 and SIGALRM
  reach children at their default disposition, and no signal is blocked
  (pytest itself survives a hangup when started under nohup);
- umask 022; locale C.UTF-8; a fresh, empty HOME (no ``~/.config/dask``,
  ``~/.jupyter`` or ``~/.ssh`` of whoever runs the suite); USER and LOGNAME
  of the effective user;
- no ``DASK_*``, MPI, batch-system, proxy, TMPDIR or colour variables from outside;
- stdin of the children is /dev/null (never a terminal they could wait on).

The working directory is set per test, and readline's COLUMNS and LINES are
dropped again (an autouse fixture in conftest.py).
tests/test_hygiene.py starts a pytest in the worst way it can and checks
what a test and its children see then.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import tempfile

#: Prefixes of variables that change what the product or its tools do; the suite sets its own.
FOREIGN_PREFIXES = (
    "DASK_",  # dask's configuration, and ours (DASK_HPC_SESSIONS, ...)
    "OMPI_",
    "PMIX_",
    "PRTE_",
    "MPI4PY_",
    "SLURM_",
    "SBATCH_",
    "SALLOC_",
    "SRUN_",
    "SQUEUE_",
    "SGE_",
    "PBS_",
    "LSB_",
    "LSF_",
    "_CONDOR_",
    "CONDOR_",
    "JUPYTER_",
    "XDG_",
    "LC_",
)
FOREIGN_NAMES = (
    "JOB_ID",  # Grid Engine's, inside a job
    "LANG",
    "LANGUAGE",
    "FORCE_COLOR",
    "NO_COLOR",
    "CLICOLOR",
    "CLICOLOR_FORCE",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "COLUMNS",
    "LINES",
    "TERM",
    "PYTHONSTARTUP",
    "PYTHONINSPECT",
    "PYTHONWARNINGS",
    # Proxies: urllib and selenium would send the tests' loopback requests through them.
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    # A long TMPDIR breaks Open MPI's and PMIx's socket paths; a noexec one, job scripts.
    "TMPDIR",
)
#: Signals whose disposition a child inherits when it is "ignored" here.
RESET_SIGNALS = ("SIGINT", "SIGQUIT", "SIGTERM", "SIGCHLD", "SIGUSR1", "SIGUSR2", "SIGALRM")


def _ignore_hangup(signum: int, frame: object) -> None:
    """pytest started under nohup survives a hangup; its children (exec resets a handled
    signal to the default) do not inherit the ignoring."""


def neutral_start() -> None:
    for name in RESET_SIGNALS:
        signum = getattr(signal, name)
        if name == "SIGINT":
            signal.signal(signum, signal.default_int_handler)
        elif signal.getsignal(signum) is signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _ignore_hangup)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())

    os.umask(0o022)

    for key in list(os.environ):
        if key.startswith(FOREIGN_PREFIXES) or key in FOREIGN_NAMES:
            del os.environ[key]
    # Who we are, as getpass.getuser() (Grid Engine's qstat -u) reads it: `su` keeps USER.
    user = pwd.getpwuid(os.geteuid()).pw_name
    os.environ["USER"] = os.environ["LOGNAME"] = user
    os.environ["LC_ALL"] = "C.UTF-8"
    os.environ["LANG"] = "C.UTF-8"
    home = tempfile.mkdtemp(prefix="dask-hpc-tests-home-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ["HOME"] = home


def forget_terminal_size() -> None:
    """GNU readline, once imported (pdb, pytest's debugging plugin), writes the terminal's
    COLUMNS and LINES into the C environment, where os.environ does not see them but every
    child does (rich sizes its output by them)."""
    for key in ("COLUMNS", "LINES"):
        os.environ.pop(key, None)
        os.unsetenv(key)


def quiet_stdin() -> None:
    """Children read /dev/null, not the terminal or pipe pytest was given (not with -s or --pdb)."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
