"""Which batch system a site's commands really belong to.

PBS Pro/OpenPBS, Torque and Grid Engine all call their submit program ``qsub``, with
flags that look alike and mean different things: a job submitted with the wrong
system's directives may run with the wrong resources, and its answer may not be
understood (``Your job 38 (...) has been submitted`` is not a PBS job id), leaving a
job that nobody cancels. So before the first submission we ask ``qstat --version``,
which each of them answers in its own words, and refuse a mismatch in one line.

Recorded real answers (tests/recorded/): OpenPBS ``pbs_version = 22.05.11``, PBS Pro
``pbs_version = PBSPro_11.1.0.111761``, Torque ``Version: 6.1.2`` (older ones
``version: 2.5.12``), Grid Engine ``SGE 8.1.9`` followed by its usage (it has no
``--version`` and prints its version line first).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass

from dask_hpc import _process
from dask_hpc.errors import CommandError

__all__ = ["Family", "qsub_family", "recognise"]

#: The probe, and how long it may take (a hung server must not hold up a submission long).
PROBE = ("qstat", "--version")
PROBE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Family:
    system: str  # our name for it: pbs, torque, sge
    words: str  # what it said of itself, e.g. "SGE 8.1.9"
    title: str  # how people call it


def qsub_family(text: str) -> Family | None:
    """The batch system that answered ``qstat --version`` with ``text``; None if unknown."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    pbs = re.search(r"pbs_version\s*=\s*(\S+)", text)
    if pbs:
        return Family("pbs", pbs[0], "PBS Pro/OpenPBS")
    if re.match(r"(?i)version:\s*\d", lines[0]):
        return Family("torque", lines[0], "Torque")
    if re.match(r"((S|U|O|OGS/)?GE|Son of Grid Engine|Univa Grid Engine|Altair Grid Engine)\b", lines[0]):
        return Family("sge", lines[0], "Grid Engine")
    return None


_seen: dict[tuple[str, str], Family | None] = {}


def recognise(system: str) -> Family | None:
    """What answers ``qstat --version`` on this host (asked once per process and program).

    None when it cannot tell: no qstat here (the submission then says so itself), no answer
    in time, or an answer in words it does not know.
    """
    program = shutil.which(PROBE[0])
    if program is None:
        return None
    key = (system, program)
    if key not in _seen:
        try:
            done = _process.run(PROBE, timeout=PROBE_TIMEOUT, check=False)
            _seen[key] = qsub_family(done.stdout + "\n" + done.stderr)
        except CommandError:
            _seen[key] = None
    return _seen[key]
