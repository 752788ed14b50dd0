"""Workers that know their walltime: they leave gracefully a margin before their job ends.

``python -m dask_hpc.worker`` preloads this module into every worker
(``dask worker --preload dask_hpc.worker.retirement``). In a job, the worker learns when
the job's walltime ends (:func:`dask_hpc.systems.current_job`), tells the
scheduler (a worker metric, ``dask_hpc_end``, that the keeper reads to submit a
replacement ahead of time), and once a second checks whether the time left is
down to its retire margin. Then it asks the scheduler to retire it: no new
tasks come, and the results it alone holds move to other workers. Only when
that succeeded does it close (nanny too, so the job ends early and cleanly).

If no other worker can take its data, it does not close yet: the keeper's
replacement may still connect. It tries again each second and closes anyway
when only :data:`LAST_CHANCE` seconds are left, before the batch system kills
it.

The margin is the time the worker's data takes to move plus a floor; the
floor is a tenth of the walltime, between 5 and 60 seconds, or the dask config
value ``dask-hpc.retire-margin`` (seconds, or a duration such as ``"2 minutes"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from dask_hpc.errors import DaskHPCError
from dask_hpc.systems import current_job

if TYPE_CHECKING:
    from distributed import Worker

__all__ = ["END_METRIC", "WalltimeWatch", "dask_setup", "retire_margin"]

logger = logging.getLogger("dask_hpc.worker.retirement")

#: The worker metric that carries the job's end (seconds since the epoch) to the scheduler.
END_METRIC = "dask_hpc_end"
#: Bytes per second assumed for moving a worker's data before it has measured any transfer.
DEFAULT_BANDWIDTH = 100e6
#: Seconds before the end when a worker closes even if its data could not move.
LAST_CHANCE = 2.0
CHECK_INTERVAL = 1.0


def margin_floor(walltime: float) -> float:
    """The least margin: ``dask-hpc.retire-margin`` if set, else walltime/10 within [5 s, 60 s]."""
    import dask
    from dask.utils import parse_timedelta

    configured = dask.config.get("dask-hpc.retire-margin", default=None)
    if configured not in (None, "auto"):
        return float(parse_timedelta(configured, default="seconds"))
    return min(60.0, max(5.0, walltime / 10))


def retire_margin(walltime: float, held_bytes: int, bandwidth: float | None = None) -> float:
    """Seconds before its end when a worker holding ``held_bytes`` should start to leave."""
    rate = bandwidth if bandwidth and bandwidth > 0 else DEFAULT_BANDWIDTH
    return margin_floor(walltime) + held_bytes / rate


class WalltimeWatch:
    """Retires one worker before its job's walltime ends."""

    def __init__(self, worker: Worker, end: float, *, now: float | None = None) -> None:
        self.worker = worker
        self.end = end
        self.walltime = end - (time.time() if now is None else now)  # what is left at the start
        self.leaving = False
        self._attempt: asyncio.Task[None] | None = None

    def seconds_left(self) -> float:
        return self.end - time.time()

    def margin(self) -> float:
        worker = self.worker
        bandwidth = getattr(worker, "bandwidth", None)  # distributed's measured transfer rate
        return retire_margin(self.walltime, int(worker.state.nbytes), bandwidth)

    def check(self) -> None:
        """Called each second on the worker's event loop."""
        if self.leaving or (self._attempt is not None and not self._attempt.done()):
            return
        left = self.seconds_left()
        if left > self.margin():
            return
        self._attempt = asyncio.ensure_future(self._leave(left))

    async def _leave(self, left: float) -> None:
        worker = self.worker
        if worker.status.name not in ("running", "paused"):
            return
        retired = await worker.scheduler.retire_workers(
            workers=[worker.address],
            close_workers=False,
            remove=True,
            stimulus_id=f"dask-hpc-walltime-{time.time()}",
        )
        if worker.address not in retired and left > LAST_CHANCE:
            logger.warning(
                "walltime ends in %.0f s, but no other worker can take this worker's data yet; "
                "trying again in %.0f s",
                left,
                CHECK_INTERVAL,
            )
            return
        self.leaving = True
        logger.info("walltime ends in %.0f s: leaving (data moved: %s)", left, worker.address in retired)
        await worker.close(nanny=True, reason=f"dask-hpc: walltime ends in {left:.0f} s")


def job_end() -> float | None:
    """When this job's walltime ends, or None outside a dask-hpc job or without a walltime."""
    try:
        return current_job().end_time
    except DaskHPCError:
        return None


def named_after_the_job(name: object, job_id: str) -> object:
    """The worker's name as the keeper knows its job: ``dask worker`` makes a name that
    ``int()`` reads a number, and ``int("4711_3")`` (a SLURM array task) is 47113; the task's
    id comes back (``4711_3``, ``4711_3-1`` for the second of several workers)."""
    compact = job_id.replace("_", "")
    if "_" not in job_id or not compact.isdigit():
        return name
    head, sep, tail = str(name).partition("-")
    if head == compact and (not sep or tail.isdigit()):
        return job_id + sep + tail
    return name


def dask_setup(worker: Worker) -> None:
    """distributed's preload hook, before the worker registers: its share of the job's GPUs
    (dask_hpc.worker.gpus), its name as its job's id, and a watch on the walltime of the
    job this worker runs in."""
    from tornado.ioloop import PeriodicCallback

    from dask_hpc.worker.gpus import share_gpus

    # Before the worker's name becomes the job's: its "-<i>" says which share of GPUs is its.
    share_gpus(str(worker.name), worker.state.total_resources)
    with contextlib.suppress(DaskHPCError):  # outside a dask-hpc job distributed's name stays
        worker.name = named_after_the_job(worker.name, current_job().job_id)
    end = job_end()
    if end is None:
        return
    watch = WalltimeWatch(worker, end)
    worker.metrics[END_METRIC] = _constant(end)  # sent with the registration and each heartbeat
    callback = PeriodicCallback(watch.check, CHECK_INTERVAL * 1000)
    worker.periodic_callbacks["dask-hpc-walltime"] = callback  # the worker stops it when it closes
    callback.start()
    worker._dask_hpc_walltime = watch  # type: ignore[attr-defined]  # for tests and the curious


def _constant(value: float) -> Any:
    def metric(worker: Any) -> float:
        return value

    return metric
