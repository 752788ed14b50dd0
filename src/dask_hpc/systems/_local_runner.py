"""The runner of one ``local`` job: start its script, enforce its walltime, record its end.

Run as ``python -m dask_hpc.systems._local_runner JOB_DIR`` by ``LocalSystem.submit``,
detached, so the job outlives whoever submitted it. SIGTERM to the runner
cancels the job.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from .base import JobState
from .local import JOB_END_VARIABLE, JOB_ID_VARIABLE, KILL_WAIT, Record

_DIRECTIVE = re.compile(r"^#LOCAL\s+--([a-z-]+)=(.*)$")


def read_directives(script: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in script.splitlines():
        match = _DIRECTIVE.match(line)
        if match:
            value = match[2].strip()
            found[match[1]] = shlex.split(value)[0] if value else ""
    return found


def main(job_dir: Path) -> int:
    job_id = job_dir.name
    script = job_dir / "script.sh"
    directives = read_directives(script.read_text())
    walltime = float(directives.get("walltime", "3600"))
    name = directives.get("job-name", "job")

    def path(key: str, default: Path) -> Path:
        value = directives.get(key)
        if not value:
            return default
        return Path(value.replace("%x", name).replace("%j", job_id))

    stdout, stderr = path("output", job_dir / "stdout"), path("error", job_dir / "stderr")
    start = time.time()
    end = start + walltime
    env = {**os.environ, JOB_ID_VARIABLE: job_id, JOB_END_VARIABLE: f"{end:.3f}"}
    cancelled = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal cancelled
        cancelled = True

    signal.signal(signal.SIGTERM, on_term)
    Record(JobState.RUNNING, runner_pid=os.getpid(), start=start).write(job_dir)
    with open(stdout, "ab") as out, open(stderr, "ab") as err:
        proc = subprocess.Popen(
            ["bash", str(script)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=os.getcwd(),
            start_new_session=True,  # its own process group: we signal all of it
        )
    while proc.poll() is None and not cancelled and time.time() < end:
        time.sleep(0.1)
    reason: str | None
    if proc.returncode is None:
        state = JobState.CANCELLED if cancelled else JobState.TIMEOUT
        reason = "cancelled" if cancelled else f"walltime of {walltime:g} s reached"
        _stop(proc)
        code = proc.returncode
    else:
        code = proc.returncode
        state = JobState.COMPLETED if code == 0 else JobState.FAILED
        reason = None if code == 0 else f"exit code {code}"
    exit_code = 128 - code if code is not None and code < 0 else code
    Record(
        state,
        runner_pid=os.getpid(),
        exit_code=exit_code,
        reason=reason,
        start=start,
        end=time.time(),
    ).write(job_dir)
    return 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the job's process group, SIGKILL after KILL_WAIT seconds."""
    for sig, wait in ((signal.SIGTERM, KILL_WAIT), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            # The script may be gone while its children live on: sweep the group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
