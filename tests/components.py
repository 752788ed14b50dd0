"""The preflight: is each real component a live test needs here, and does it work?

A live test whose component is missing or broken must not fail somewhere deep
inside with a confusing message (``srun: error: mpi/pmix_v4: init: can not load
PMIx library``). Its fixture calls :func:`require` first: under CI (CI=true) a
missing component fails the test with one line naming it and the script that
installs it; elsewhere the test is skipped with the same line.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

IN_CI_VALUES = ("1", "true", "yes")


def _commands(*names: str) -> Callable[[], str | None]:
    def check() -> str | None:
        absent = [n for n in names if shutil.which(n) is None and not Path(n).is_file()]
        return f"no {', '.join(absent)}" if absent else None

    return check


def _runs(argv: list[str], what: str, timeout: float = 60) -> Callable[[], str | None]:
    """The command exits 0; else what it said last."""

    def check() -> str | None:
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{what}: {exc}"
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[-1]
            return f"{what}: {last}"
        return None

    return check


def site_libmpi() -> Path | None:
    """Debian's Open MPI library (the "site MPI" that srun --mpi=pmix starts), any architecture."""
    found = sorted(glob.glob("/usr/lib/*-linux-gnu/libmpi.so.40"))
    return Path(found[0]) if found else None


def _site_mpi() -> str | None:
    return None if site_libmpi() else "no /usr/lib/<arch>/libmpi.so.40 (Debian's libopenmpi3)"


def venv_mpirun() -> Path:
    """The mpirun of the PyPI Open MPI wheel, beside this Python (dask-hpc[mpi])."""
    return Path(sys.executable).parent / "mpirun"


def _mpirun() -> str | None:
    if not venv_mpirun().exists():
        return f"no {venv_mpirun()}"
    try:
        import mpi4py  # noqa: F401
    except ImportError as exc:
        return f"mpi4py: {exc}"
    return _runs([str(venv_mpirun()), "--version"], "mpirun --version")()


@dataclass(frozen=True)
class Component:
    name: str
    installer: str
    checks: tuple[Callable[[], str | None], ...]

    def problem(self) -> str | None:
        for check in self.checks:
            problem = check()
            if problem:
                return problem
        return None


COMPONENTS = {
    "slurm": Component(
        "SLURM",
        "scripts/local-slurm up",
        (
            _commands("slurmctld", "slurmd", "sbatch", "srun", "squeue", "scancel", "sinfo", "scontrol"),
            _runs(["scontrol", "ping"], "scontrol ping"),
        ),
    ),
    # Slurm's pmix plugin needs libpmix-dev's libpmix.so; `srun --mpi=list` lists pmix without it.
    "pmix": Component(
        "SLURM's PMIx (srun --mpi=pmix)",
        "scripts/local-slurm up",
        (_runs(["srun", "-n", "1", "--mpi=pmix", "--time", "1", "true"], "srun -n 1 --mpi=pmix true"),),
    ),
    "site-mpi": Component("Debian's Open MPI (the site MPI)", "scripts/local-slurm up", (_site_mpi,)),
    "sge": Component(
        "Grid Engine",
        "scripts/local-sge up",
        (
            _commands("sge_qmaster", "sge_execd", "qsub", "qstat", "qdel", "qacct", "qconf"),
            _runs(["qstat", "-f"], "qstat -f"),
        ),
    ),
    "oar": Component(
        "OAR",
        "scripts/local-oar up",
        (
            _commands("oarsub", "oarstat", "oardel", "oarnodes", "/usr/sbin/Almighty"),
            _runs(["oarstat"], "oarstat"),
        ),
    ),
    "laptop": Component(
        "the laptop (sshd, ip netns, Chromium)",
        "scripts/local-laptop up",
        (
            _commands(
                "/usr/sbin/sshd", "ssh", "ssh-keygen", "ip", "/usr/bin/chromium", "/usr/bin/chromedriver"
            ),
            _runs(["/usr/bin/chromium", "--headless", "--no-sandbox", "--version"], "chromium --version"),
            _runs(["/usr/bin/chromedriver", "--version"], "chromedriver --version"),
        ),
    ),
    "mpirun": Component("Open MPI's mpirun (PyPI)", "make test (it installs dask-hpc[mpi])", (_mpirun,)),
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in IN_CI_VALUES


def require(*names: str) -> None:
    """Fail (CI) or skip (elsewhere) with one line when a component is missing or broken."""
    for name in names:
        component = COMPONENTS[name]
        problem = component.problem()
        if problem is None:
            continue
        line = f"{component.name} is missing or broken ({problem}); {component.installer} installs it"
        if in_ci():
            pytest.fail(line, pytrace=False)
        pytest.skip(line)
