"""The runner of one ``local`` job: wait for a slot, start its script, enforce its walltime.

Run as ``python -m dask_hpc.systems._local_runner JOB_DIR [SLOTS]`` by
``LocalSystem.submit``, detached, so the job outlives whoever submitted it.
SIGTERM to the runner cancels the job, pending or running.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dask_hpc.systems.base import JobState
from dask_hpc.systems.local import (
    CANCEL_FILE,
    JOB_END_VARIABLE,
    JOB_ID_VARIABLE,
    KILL_WAIT,
    Record,
    pid_alive,
    runner_started,
)

_DIRECTIVE = re.compile(r"^#LOCAL\s+--([a-z-]+)=(.*)$")


def read_directives(script: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in script.splitlines():
        match = _DIRECTIVE.match(line)
        if match:
            value = match[2].strip()
            found[match[1]] = shlex.split(value)[0] if value else ""
    return found


def main(job_dir: Path, slots: int | None = None) -> int:
    """Run the job; any failure of our own is a FAILED job with the reason in one line."""
    try:
        return run(job_dir, slots)
    except Exception as exc:  # the job's state must say why, not a traceback nobody reads
        Record(
            JobState.FAILED,
            runner_pid=os.getpid(),
            runner_started=runner_started(),
            reason=f"the job's runner failed: {exc}",
            end=time.time(),
        ).write(job_dir)
        return 1


def run(job_dir: Path, slots: int | None) -> int:
    if (job_dir / CANCEL_FILE).exists():  # cancelled before this runner could hear of it
        Record(JobState.CANCELLED, **_me(), reason="cancelled while pending").write(job_dir)
        return 0
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
    cancelled = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal cancelled
        cancelled = True

    signal.signal(signal.SIGTERM, on_term)
    while not _take_slot(job_dir, slots):
        if cancelled:
            Record(
                JobState.CANCELLED,
                runner_pid=os.getpid(),
                runner_started=runner_started(),
                reason="cancelled while pending",
            ).write(job_dir)
            return 0
        time.sleep(0.2)
    start = time.time()  # the walltime counts from the start, not the submission
    end = start + walltime
    env = {**os.environ, JOB_ID_VARIABLE: job_id, JOB_END_VARIABLE: f"{end:.3f}"}
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
        runner_started=runner_started(),
        exit_code=exit_code,
        reason=reason,
        start=start,
        end=time.time(),
    ).write(job_dir)
    return 0


def _take_slot(job_dir: Path, slots: int | None) -> bool:
    """Record this job RUNNING if a slot is free and no older job waits; else PENDING.

    The check and the write happen under one lock on the spool, so two runners
    never take the last slot together.
    """
    if slots is None:
        Record(JobState.RUNNING, **_me(), start=time.time()).write(job_dir)
        return True
    me = int(job_dir.name)
    with open(job_dir.parent / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        busy = 0
        for other in job_dir.parent.iterdir():
            if not other.name.isdigit() or other == job_dir:
                continue
            record = Record.read(other)
            if record is None or record.state.finished:
                continue
            if not pid_alive(record.runner_pid, record.runner_started):
                continue
            older_waiting = record.state is JobState.PENDING and record.runner_pid and int(other.name) < me
            if record.state is JobState.RUNNING or older_waiting:
                busy += 1
        if busy < slots:
            Record(JobState.RUNNING, **_me(), start=time.time()).write(job_dir)
            return True
        reason = f"waiting for a free slot ({busy} of {slots} taken or promised)"
        Record(JobState.PENDING, **_me(), reason=reason).write(job_dir)
        return False


def _me() -> dict[str, Any]:
    return {"runner_pid": os.getpid(), "runner_started": runner_started()}


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
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None))
