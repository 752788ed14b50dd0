"""The keeper: the part of the scheduler that owns a session's worker jobs.

It runs inside the scheduler process, so scaling (``add``, ``remove``,
``adapt``) goes on when no client is connected. Commands and the Python API
reach it through scheduler handlers named ``dask_hpc_*``. It is the only writer
of the job ledger. Batch-system commands run in threads: the scheduler's event
loop never waits on ``sbatch`` or ``squeue``. Decisions live in :mod:`~dask_hpc.keeper.decisions`,
the requests and answers of its handlers in :mod:`~dask_hpc.keeper.protocol`.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from distributed.diagnostics.plugin import SchedulerPlugin
from tornado.ioloop import PeriodicCallback

from dask_hpc.errors import (
    CapError,
    DaskHPCError,
    PartlySubmittedError,
    SessionError,
    SpecError,
    SubmitError,
    SubmitUnclearError,
)
from dask_hpc.keeper import protocol
from dask_hpc.keeper.decisions import (
    Backoff,
    adapt_target_jobs,
    cap_message,
    cap_refusal,
    capped_jobs,
    choose_removals,
    job_limit_message,
    job_of_worker,
    lost_kept_jobs,
    pool_target_jobs,
    replacement_times,
    running_cap_message,
    running_cap_refusal,
    scale_steps,
    session_holds,
)
from dask_hpc.keeper.scripts import takes_arrays, worker_script
from dask_hpc.launch import dashboard_port
from dask_hpc.network import InterfaceChoice
from dask_hpc.security import tls_files
from dask_hpc.spec import JobSpec
from dask_hpc.state.ledger import JobRecord, load_ledger, save_ledger
from dask_hpc.state.session import Session, SessionConfig
from dask_hpc.systems import BatchSystem, Cap, JobLimit, JobState, current_job, get_system
from dask_hpc.worker.classes import check_worker_class
from dask_hpc.worker.retirement import END_METRIC, retire_margin

if TYPE_CHECKING:
    from distributed import Scheduler

__all__ = ["Keeper"]

logger = logging.getLogger("dask_hpc.keeper.plugin")

#: Adapt asks the scheduler this often, and ends a job only after this many asks agree.
ADAPT_INTERVAL = 1.0
ADAPT_WAIT_COUNT = 3
#: Submissions in flight at once.
SUBMIT_CONCURRENCY = 8
#: Kept jobs are looked at this often (replacements ahead of walltimes, lost jobs).
KEEP_INTERVAL = 1.0
#: The site's caps on the user's jobs are asked again after this many seconds.
CAPS_TTL = 60.0
#: Seconds an answer of the site's counts as of now: a refusal by an older one asks again.
FRESH = 2.0
#: Seconds the workers of jobs being ended may go without handing any of their data to the
#: others. distributed's retire_workers waits for ever on a worker that no longer answers (its
#: data cannot be fetched), and the keeper's lock with it: add, scale, remove and down hung.
RETIRE_TIMEOUT = 60.0


class Keeper(SchedulerPlugin):
    name = "dask-hpc-keeper"

    def __init__(
        self,
        session: Session,
        config: SessionConfig,
        interface: InterfaceChoice,
        system: BatchSystem | None = None,
    ) -> None:
        self.session = session
        self.config = config
        self.interface = interface
        self.system = system or get_system(config.system, config.system_settings)
        self.jobs: dict[str, JobRecord] = load_ledger(session.ledger_file)
        self.workers_of: dict[str, set[str]] = defaultdict(set)  # job id -> worker addresses
        self.adapt_bounds: tuple[int, int | None] | None = None  # (min, max: None for none)
        self.adapt_interval = ADAPT_INTERVAL  # seconds between adapt's decisions
        self.adapt_wait_count = ADAPT_WAIT_COUNT  # decisions in a row before a job ends
        self._adapted_at = 0.0  # time.monotonic() of adapt's last decision
        self.adapt_spec: JobSpec = config.spec
        # The most jobs the site's caps leave this session, and the cap: adapt stays below it.
        self.adapt_cap: tuple[int, Cap] | None = None
        #: Each scope's caps (account, partition, QOS) and when they were asked: pools of other
        #: partitions adapt beside the session's own, each with its own.
        self._caps_cache: dict[tuple[str | None, ...], tuple[float, list[Cap]]] = {}
        self._caps_lock = threading.Lock()
        self._checked: set[str] = set()  # the specs (JSON) whose jobs the site would take
        self._limits: dict[str, tuple[float, list[JobLimit]]] = {}  # a spec's limits on one job, asked ahead
        self._asking: asyncio.Future[None] | None = None
        self.pools: dict[str, JobSpec] = {}  # each pool's spec, as its first add gave it
        # The pools adapted beside the session's own jobs: spec, fewest and most jobs.
        self.pool_adapts: dict[str, tuple[JobSpec, int, int | None]] = {}
        self.pool_close_counts: dict[str, int] = {}  # a pool's idle jobs: steps in a row idle
        self.pool_caps: dict[str, tuple[int, Cap] | None] = {}  # as adapt_cap, a pool's adapt's
        self._user_jobs_cache: tuple[float, int | None] | None = None
        # Job id -> its spec where it is not the session's, for its replacement.
        self.specs: dict[str, JobSpec] = {
            j: JobSpec.from_dict(r.spec) for j, r in self.jobs.items() if r.spec is not None
        }
        # Keys computed (processing -> memory) and not forgotten since; a second time is a recompute.
        self.computed: set[Any] = set()
        self.recomputed = 0
        # Failed automatic submissions (adapt, replacements): they wait, then stop (decisions.Backoff).
        self.backoff = Backoff()
        self.last_refusal: protocol.LastRefusal | None = None
        self.close_counts: dict[str, int] = {}
        self.can_submit, self.submit_note = self._submit_here()
        self.scheduler: Scheduler | None = None
        self._lock = asyncio.Lock()  # one change to the set of jobs at a time
        self._callbacks: list[PeriodicCallback] = []
        self._dirty = False

    def _submit_here(self) -> tuple[bool, str]:
        """Whether this node may submit jobs: a site setting, or the submit program missing here."""
        if self.config.submit_from == "client":
            return False, "the login node (the session was started with --submit-from client)"
        program = self.system.submit_argv(self.session.scripts / "x.sh")[0]
        if shutil.which(program) is None:
            return False, f"the login node ({program} is not available on the scheduler's node)"
        return True, "the scheduler's node"

    # ---- plugin hooks -------------------------------------------------------

    async def start(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        try:
            self.scheduler_end: float | None = current_job().end_time
        except DaskHPCError:  # a scheduler outside a job (BatchCluster(scheduler="local"))
            self.scheduler_end = None
        methods: dict[type[protocol.Request[Any]], Callable[[Any], Awaitable[protocol.Answer]]] = {
            protocol.Status: self.status,
            protocol.Add: self.add,
            protocol.Register: self.register,
            protocol.Remove: self.remove,
            protocol.Scale: self.scale,
            protocol.Adapt: self.adapt,
            protocol.Down: self.down,
        }
        assert set(methods) == set(protocol.REQUESTS)
        if self.can_submit:
            self._asking = asyncio.ensure_future(asyncio.to_thread(self._ask_the_site))
        scheduler.handlers.update({kind.op: self._handler(kind, m) for kind, m in methods.items()})
        for callback, seconds in (
            (self._refresh, self.config.refresh),
            (self._adapt_step, ADAPT_INTERVAL),
            (self._keep_step, KEEP_INTERVAL),
            (self._flush, 1.0),
        ):
            pc = PeriodicCallback(callback, seconds * 1000)
            pc.start()
            self._callbacks.append(pc)

    async def before_close(self) -> None:
        for pc in self._callbacks:
            pc.stop()
        self._flush()

    def add_worker(self, scheduler: Scheduler, worker: str) -> None:
        self._attach(worker)

    def remove_worker(self, scheduler: Scheduler, worker: str, **kwargs: Any) -> None:
        for addresses in self.workers_of.values():
            addresses.discard(worker)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        # Counts tasks computed again because their result was lost (a worker died with it):
        # what graceful retirement before the walltime is there to prevent.
        if finish == "memory" and start == "processing":
            if key in self.computed:
                self.recomputed += 1
            else:
                self.computed.add(key)
        elif finish == "forgotten":
            self.computed.discard(key)

    def _attach(self, worker: str) -> None:
        assert self.scheduler is not None
        ws = self.scheduler.workers.get(worker)
        if ws is None:
            return
        job_id = job_of_worker(str(ws.name), self.jobs) or self._adopt(ws)
        if job_id is None:
            return
        self.workers_of[job_id].add(worker)
        record = self.jobs[job_id]
        end = _reported_end(ws)
        # A job seen ended (unknown past the grace: the queue lagged) whose worker joins is
        # running after all: live again, so that it is queried, cancelled by down, not replaced.
        back = record.ended is not None and not record.removed
        if record.joined is None and self.backoff.failures:
            logger.info("job %s's worker joined: automatic submissions no longer held back", job_id)
            self.backoff = Backoff()  # jobs start and join: whatever failed before has passed
        if back or record.joined is None or record.state is not JobState.RUNNING or record.end != end:
            now = time.time()
            self.jobs[job_id] = replace(
                record,
                state=JobState.RUNNING,
                reason=None,
                node=record.node or ws.host,
                started=record.started or now,
                joined=record.joined or now,
                end=end or record.end,
                ended=None if back else record.ended,
                exit_code=None if back else record.exit_code,
            )
            self._save()

    def _adopt(self, ws: Any) -> str | None:
        """The job of a worker from a dask-hpc job that the ledger lacks, now in the ledger.

        Such a job was submitted but its id never reached us: the submit command's answer
        could not be read, it did not answer in time, or whoever submitted it died before
        writing the ledger. Its worker names it (workers in our jobs are named after the job
        and report their walltime's end); adopted, it is queried, counted and cancelled by
        ``down`` like the others, instead of running on unseen.
        """
        if _reported_end(ws) is None:
            return None  # not started by python -m dask_hpc.worker in a job: a worker of the user's
        name = str(ws.name)
        head, sep, tail = name.rpartition("-")
        job_id = (head if sep and tail.isdigit() else name).partition("@")[0]  # <job>@<node>
        if not job_id or job_id.startswith(("tcp://", "tls://", "mpi://")):
            return None
        logger.warning("job %s's worker joined, but the ledger had no such job: adopted", job_id)
        self.jobs[job_id] = self._record(job_id, self.config.spec, time.time())
        self._save()
        return job_id

    # ---- handlers (called by the CLI and BatchCluster; keeper/protocol.py) ----------

    def _handler(
        self, kind: type[protocol.Request[Any]], method: Callable[[Any], Awaitable[protocol.Answer]]
    ) -> Callable[..., Awaitable[dict[str, Any]]]:
        """A scheduler handler for requests of ``kind``: our errors are answered as refusals."""

        async def handle(**message: Any) -> dict[str, Any]:
            try:
                return protocol.answer_message(await method(protocol.request_from(kind, message)))
            except DaskHPCError as exc:
                return protocol.refusal(exc)

        return handle

    async def status(self, request: protocol.Status) -> protocol.KeeperStatus:
        assert self.scheduler is not None
        now = time.time()
        plans = self._replacement_plans()
        jobs = [
            protocol.JobReport(
                **{f: getattr(record, f) for f in _RECORD_FIELDS},
                workers=len(self.workers_of.get(record.job_id, ())),
                walltime_left=record.walltime_left(now),
                replace_in=None if record.job_id not in plans else plans[record.job_id] - now,
            )
            for record in self.jobs.values()
        ]
        workers = self.scheduler.workers.values()
        mine = {a for addresses in self.workers_of.values() for a in addresses}
        return protocol.KeeperStatus(
            address=self.scheduler.address,
            dashboard=_dashboard(self.scheduler, self.interface.address),
            dashboard_port=dashboard_port(self.scheduler),
            interface=protocol.InterfaceReport(
                self.interface.name, self.interface.address, self.interface.why
            ),
            submit_from=self.submit_note,
            security="insecure" if self.config.insecure else "tls",
            adapt=self._bounds(),
            jobs=jobs,
            workers=len(workers),
            other_workers=len([ws for ws in workers if ws.address not in mine]),
            threads=sum(ws.nthreads for ws in workers),
            memory=sum(ws.memory_limit or 0 for ws in workers),
            processes=self.config.spec.workers,
            scheduler_walltime_left=None if self.scheduler_end is None else self.scheduler_end - now,
            recomputed=self.recomputed,
            submit_trouble=self.backoff.trouble(now),
            last_refusal=self.last_refusal,
            capped=self._capped_words(),
            pool_capped=self._pool_capped_words(),
            pool_adapt={
                pool: protocol.AdaptBounds(lo, hi, ADAPT_INTERVAL, ADAPT_WAIT_COUNT)
                for pool, (_, lo, hi) in self.pool_adapts.items()
            },
        )

    async def add(self, request: protocol.Add) -> protocol.Jobs | protocol.SubmitHere:
        """Submit worker jobs (:class:`~dask_hpc.keeper.protocol.Add`)."""
        async with self._lock:
            return await self._add(request.n, request.options, request.keep)

    async def _check_job(self, spec: JobSpec) -> None:
        """Refuse, in one line, jobs of ``spec`` that the site would refuse or hold forever
        (its parallel environment, a partition's MaxTime and MaxNodes): once a spec. The
        session's own were checked by up; a scheduler outside a job had no up."""
        key = json.dumps(spec.to_dict(), sort_keys=True)
        if key in self._checked or (spec == self.config.spec and not self.config.scheduler_here):
            return
        await asyncio.to_thread(self.system.check_site, spec)
        await asyncio.to_thread(check_worker_class, spec)  # imports the user's module
        if self._asking is not None:
            await self._asking  # asked when the keeper started, the session's own jobs' limits among it
        asked = self._limits.pop(key, None)
        if asked is not None and time.monotonic() - asked[0] <= CAPS_TTL:
            limits = asked[1]
        else:  # not asked ahead, or long ago: the site may have changed them since
            limits = await asyncio.to_thread(self.system.job_limits, spec)
        line = job_limit_message(limits, spec, self.system.name)
        if line:
            raise CapError(line)
        self._checked.add(key)

    async def _adapt_pool(self, spec: JobSpec, lo: int, hi: int | None) -> protocol.Adapting:
        """Adapt a pool (``spec.pool``) between ``lo`` and ``hi`` jobs by the tasks that ask
        for its resource (:meth:`_pool_adapt_step`), beside the session's own adapt; it
        decides every ADAPT_INTERVAL seconds and ends a job idle ADAPT_WAIT_COUNT in a row."""
        assert spec.pool is not None
        self.pool_adapts[spec.pool] = (spec, lo, hi)
        self.backoff = Backoff()  # the user acts: a fresh start
        async with self._lock:
            try:
                await self._pool_adapt_step(spec.pool)
            except DaskHPCError as exc:
                self._refused("adapt", exc)
                del self.pool_adapts[spec.pool]  # nothing could be submitted: say so, do not storm
                raise SessionError(f"{exc}; adapt of pool {spec.pool} is off") from None
        return protocol.Adapting(protocol.AdaptBounds(lo, hi, ADAPT_INTERVAL, ADAPT_WAIT_COUNT))

    def _pool_tasks(self, pool: str) -> int:
        """The tasks that ask for a pool's resource and have their inputs: waiting for a
        worker of the pool (unrunnable: none has it yet), or on one (processing: running,
        or ready there until its resource is free)."""
        assert self.scheduler is not None
        key = f"pool-{pool}"
        waiting = sum(1 for ts in self.scheduler.unrunnable if key in (ts.resource_restrictions or {}))
        running = sum(len(ws.processing) for ws in self.scheduler.workers.values() if key in ws.resources)
        return waiting + running

    async def _pool_adapt_step(self, only: str | None = None) -> None:
        """Each adapted pool (or ``only`` that one) to the jobs its tasks want, within its
        bounds: more submitted (kept, as adapt's), or jobs whose workers have had no task of
        the pool for ``ADAPT_WAIT_COUNT`` steps in a row ended (call under the lock)."""
        assert self.scheduler is not None
        for pool, (spec, lo, hi) in list(self.pool_adapts.items()):
            if only is not None and pool != only:
                continue
            live = self._pool_jobs(pool)
            target = pool_target_jobs(self._pool_tasks(pool), spec, lo, hi)
            up, down = scale_steps(live, target)
            if up:  # as the session's adapt: the caps bound what it asks for, never what it keeps
                cap = await asyncio.to_thread(self._cap_of, pool, spec)
                if self.pool_adapts.get(pool) != (spec, lo, hi):
                    continue  # adapt --off (or new bounds) while the site was asked: not ours now
                self.pool_caps[pool] = cap
                up = up if cap is None else scale_steps(live, min(target, cap[0]))[0]
            if up and self.backoff.may_submit(time.time()):
                await self._submit(up, spec, keep=self.can_submit)
                continue
            busy = {
                job_of_worker(str(ws.name), self.jobs)
                for ws in self.scheduler.workers.values()
                if ws.processing
            }
            idle = [r for r in live if r.job_id not in busy]
            chosen = choose_removals(idle, down, self._held_bytes()) if down else []
            counts = self.pool_close_counts
            for job_id in [r.job_id for r in live if r.job_id in counts and r.job_id not in chosen]:
                del counts[job_id]  # busy again: its count starts over
            firm = []
            for job_id in chosen:
                counts[job_id] = counts.get(job_id, 0) + 1
                if counts[job_id] >= ADAPT_WAIT_COUNT:
                    firm.append(job_id)
                    del counts[job_id]
            await self._end_jobs(firm, retire=True)

    def _pool_jobs(self, pool: str | None) -> list[JobRecord]:
        """The live jobs of a pool (None: the session's own, of no pool) not being removed."""
        return [r for r in self.jobs.values() if r.live and not r.removed and r.pool == pool]

    def _pool_spec(self, options: dict[str, Any]) -> JobSpec:
        """The spec of jobs asked with ``options``: a pool's (``pool`` among them) is the one
        it was first given, which later options change for their jobs only; else the
        session's. A pool first seen in the ledger (a keeper restarted) is its jobs'."""
        fields = self.system.walltime_fields
        pool = options.get("pool")
        if pool is None:
            return self.config.spec.with_options(walltime_fields=fields, **options)
        if pool not in self.pools:
            known = [self.specs.get(j, self.config.spec) for j, r in self.jobs.items() if r.pool == pool]
            self.pools[pool] = (
                known[-1] if known else self.config.spec.with_options(walltime_fields=fields, **options)
            )
        return self.pools[pool].with_options(walltime_fields=fields, **options)

    async def _add(
        self, n: int, options: dict[str, Any], keep: bool, by: str = "add"
    ) -> protocol.Jobs | protocol.SubmitHere:
        spec = self._pool_spec(options)
        await self._check_job(spec)
        await asyncio.to_thread(self._check_running_caps, n, spec, keep)
        if not self.can_submit:
            if keep:
                raise SessionError(
                    f"--keep needs to submit jobs from the scheduler's node, but jobs are "
                    f"submitted from {self.submit_note}; add jobs without --keep"
                )
            sizes = await asyncio.to_thread(self.system.batches, n, takes_arrays(spec, self.system))
            await asyncio.to_thread(self._check_caps, n, len(sizes), spec, keep)
            arrays = [[tasks, self.job_script(spec, tasks)] for tasks in sizes if tasks > 1]
            return protocol.SubmitHere(self.job_script(spec), n, arrays)
        try:
            return protocol.Jobs(await self._submit(n, spec, keep=keep))
        except (SubmitError, SubmitUnclearError, PartlySubmittedError) as exc:
            self._refused(by, exc)  # the accepted ones of a partly refused submission will join
            raise

    async def register(self, request: protocol.Register) -> protocol.Jobs:
        """Take over jobs that the client submitted (where the scheduler's node may not)."""
        spec = self.config.spec.with_options(walltime_fields=self.system.walltime_fields, **request.options)
        now = time.time()
        for job_id in request.job_ids:
            new = self._record(job_id, spec, now)
            known = self.jobs.get(job_id)  # registered twice, or adopted when its worker came first
            self.jobs[job_id] = (
                new
                if known is None
                else replace(
                    known,
                    job_name=new.job_name,
                    processes=new.processes,
                    walltime=new.walltime,
                    spec=new.spec,
                )
            )
        self._save()
        assert self.scheduler is not None
        for worker in list(self.scheduler.workers):
            self._attach(worker)  # workers may have joined before their job was registered
        return protocol.Jobs(list(request.job_ids))

    async def remove(self, request: protocol.Remove) -> protocol.Jobs:
        """End worker jobs, after moving their workers' data elsewhere."""
        async with self._lock:
            return await self._remove(request.n, request.job_ids, request.pool)

    async def _remove(
        self, n: int | None, job_ids: list[str] | None = None, pool: str | None = None
    ) -> protocol.Jobs:
        if job_ids:
            unknown = [j for j in job_ids if j not in self.jobs]
            if unknown:
                known = ", ".join(j for j, r in self.jobs.items() if r.live) or "none live"
                raise SessionError(f"no job {', '.join(unknown)} in this session; its jobs: {known}")
            chosen = [j for j in job_ids if self.jobs[j].live]
        else:
            pools = set(self.pools) | {p for r in self.jobs.values() if (p := r.pool)}
            if pool is not None and pool not in pools:
                raise SessionError(
                    f"no pool {pool} in this session; its pools: {', '.join(sorted(pools)) or 'none'} "
                    "(without --pool: the session's own jobs)"
                )
            chosen = choose_removals(self._pool_jobs(pool), n or 0, self._held_bytes())
        await self._end_jobs(chosen, retire=True)
        return protocol.Jobs(chosen)

    async def scale(self, request: protocol.Scale) -> protocol.Jobs | protocol.SubmitHere:
        """Make the number of live worker jobs ``request.jobs``; turns adapt off."""
        jobs = request.jobs
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
            raise SpecError("jobs", jobs, "must be a whole number >= 0")
        self.adapt_bounds = None
        self.backoff = Backoff()  # the user acts: automatic submissions (replacements) may go again
        # Counted and changed under the lock: two scales at once must not both submit the difference.
        async with self._lock:
            pool = request.options.get("pool")  # a pool's jobs; without one, the session's own
            up, down = scale_steps(self._pool_jobs(pool), jobs)
            if up:
                # Kept (the size holds through walltimes) where the keeper may submit replacements.
                return await self._add(up, request.options, keep=self.can_submit, by="scale")
            if down:
                return await self._remove(down, pool=pool)
            return protocol.Jobs([])

    async def adapt(self, request: protocol.Adapt) -> protocol.Adapting:
        pool = request.options.get("pool")
        if request.off and pool is not None:
            self.pool_adapts.pop(pool, None)
            self.pool_caps.pop(pool, None)
            return protocol.Adapting(None)
        if request.off:
            self.adapt_bounds = None
            return protocol.Adapting(None)
        lo, hi = request.minimum_jobs or 0, request.maximum_jobs
        if lo < 0 or (hi is not None and hi < lo):
            raise SpecError("adapt bounds", f"min {lo}, max {hi}", "need 0 <= min <= max")
        interval = ADAPT_INTERVAL if request.interval is None else request.interval
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not 0 < interval <= 3600:
            raise SpecError("adapt interval", interval, "seconds, more than 0 and at most an hour")
        wait_count = ADAPT_WAIT_COUNT if request.wait_count is None else request.wait_count
        if isinstance(wait_count, bool) or not isinstance(wait_count, int) or wait_count < 1:
            raise SpecError("adapt wait_count", wait_count, "a whole number >= 1")
        if not self.can_submit:
            raise SessionError(
                f"adapt needs to submit jobs from the scheduler's node, but jobs are submitted "
                f"from {self.submit_note}; use dask-hpc add/remove instead"
            )
        spec = self._pool_spec(request.options)
        await self._check_job(spec)
        if spec.pool is not None:
            return await self._adapt_pool(spec, lo, hi)
        self.adapt_spec = spec
        self.adapt_bounds = (lo, hi)
        self.adapt_interval, self.adapt_wait_count = float(interval), wait_count
        self.close_counts.clear()
        self.backoff = Backoff()  # the user acts: a fresh start
        # The first step now, so that a refusal is in this answer, not only in the logs.
        async with self._lock:
            try:
                await self._adapt_up()
            except PartlySubmittedError as exc:
                self._failed(f"adapt: {exc}")
                return protocol.Adapting(self._bounds(), f"{exc}; adapt goes on, {self._next_try()}")
            except DaskHPCError as exc:
                self._refused("adapt", exc)
                self.adapt_bounds = None  # nothing could be submitted: say so, do not storm
                then = "change what the batch system refused, then adapt again"
                raise SessionError(
                    f"{exc}; adapt is off" + (f": {then}" if isinstance(exc, SubmitError) else "")
                ) from None
        return protocol.Adapting(self._bounds())

    def _capped_words(self) -> str | None:
        """Whether the site's caps hold adapt back, and by which cap: for status."""
        if self.adapt_bounds is None or self.adapt_cap is None or self.scheduler is None:
            return None
        most, cap = self.adapt_cap
        lo, hi = self.adapt_bounds
        wanted = adapt_target_jobs(self.scheduler.adaptive_target(), self.adapt_spec.workers, lo, hi)
        return f"at most {most} jobs by {cap.words}" if wanted > most else None

    def _pool_capped_words(self) -> dict[str, str]:
        """As :meth:`_capped_words`, for each adapted pool that the caps hold back."""
        words = {}
        for pool, (spec, lo, hi) in self.pool_adapts.items():
            capped = self.pool_caps.get(pool)
            if capped is not None and pool_target_jobs(self._pool_tasks(pool), spec, lo, hi) > capped[0]:
                words[pool] = f"at most {capped[0]} jobs by {capped[1].words}"
        return words

    def _bounds(self) -> protocol.AdaptBounds | None:
        if self.adapt_bounds is None:
            return None
        lo, hi = self.adapt_bounds
        return protocol.AdaptBounds(lo, hi, self.adapt_interval, self.adapt_wait_count)

    def _next_try(self) -> str:
        wait = self.backoff.retry_in(time.time())
        if wait is None:
            return "but automatic submissions have stopped: run adapt or scale again once fixed"
        return f"the next submission in {wait:.0f} s at the earliest"

    async def down(self, request: protocol.Down) -> protocol.Jobs:
        """End every worker job and then the scheduler; the ledger and logs stay."""
        self.adapt_bounds = None
        async with self._lock:
            live = [j for j, r in self.jobs.items() if r.live]
            # Jobs removed earlier may still be ending (Grid Engine takes seconds to delete a
            # running job): cancelled again to be sure, but not counted as ended by down.
            ending = [j for j in live if not self.jobs[j].removed]
            error = None
            try:
                await self._end_jobs(live, retire=False)
            except DaskHPCError as exc:
                error = str(exc)
            # Every job's last state on disk before the answer: the asker may read the ledger
            # (or the process end) before the scheduler's close writes it.
            self._dirty = True
            self._flush()
        assert self.scheduler is not None
        # Answer first, then close: the caller waits for the scheduler's job to end.
        asyncio.get_running_loop().call_later(0.2, lambda: asyncio.ensure_future(self._close_scheduler()))
        return protocol.Jobs(ending, warning=error)

    async def _close_scheduler(self) -> None:
        assert self.scheduler is not None
        await self.scheduler.close(reason="dask-hpc down")

    # ---- doing ----------------------------------------------------------------

    def job_script(self, spec: JobSpec, tasks: int = 1) -> str:
        return worker_script(
            self.system,
            spec,
            self.session.scheduler_file,
            python=self.config.python,
            interface=self.config.interface,
            tls=None if self.config.insecure else tls_files(self.session.directory),
            protocol=self.config.protocol,
            tasks=tasks,
        )

    def _record(self, job_id: str, spec: JobSpec, now: float, keep: bool = False) -> JobRecord:
        return JobRecord(
            job_id=job_id,
            job_name=self.system.job_name(spec),
            processes=spec.workers,  # workers per job: processes on each of its nodes
            walltime=spec.walltime,
            submitted=now,
            keep=keep,
            spec=None if spec == self.config.spec else _as_json(spec.to_dict()),
        )

    async def _submit(self, n: int, spec: JobSpec, *, keep: bool = False) -> list[str]:
        """Submit ``n`` jobs: as arrays where the system has them (one submission for up to
        its largest array, each task a job of the ledger), else single jobs a few at a time:
        faster than one by one, gentle on the batch system."""
        sizes = await asyncio.to_thread(self.system.batches, n, takes_arrays(spec, self.system))
        await asyncio.to_thread(self._check_caps, n, len(sizes), spec, keep)
        scripts = {tasks: self.job_script(spec, tasks) for tasks in set(sizes)}
        gate = asyncio.Semaphore(SUBMIT_CONCURRENCY)

        async def one(tasks: int) -> list[str]:
            script, where = scripts[tasks], self.session.scripts
            async with gate:
                if tasks == 1:
                    ids = [await asyncio.to_thread(self.system.submit, script, where)]
                else:
                    ids = await asyncio.to_thread(self.system.submit_array, script, where, tasks)
            now = time.time()
            for job_id in ids:
                self.jobs[job_id] = replace(
                    self._record(job_id, spec, now, keep), array=ids[0] if tasks > 1 else None
                )
                if spec != self.config.spec:
                    self.specs[job_id] = spec
            # Written now, not within the second: a job the ledger lacks would be nobody's to cancel.
            self._dirty = True
            self._flush()
            return ids

        results = await asyncio.gather(*(one(tasks) for tasks in sizes), return_exceptions=True)
        self._save()
        ids = [job_id for r in results if isinstance(r, list) for job_id in r]
        errors = [r for r in results if isinstance(r, BaseException)]
        if any(isinstance(e, SubmitError) for e in errors):
            self._caps_cache.clear()  # a limit set since we asked (AssocMaxSubmitJobLimit): ask again
            if not ids:
                # Said as a cap, in one line with the way out, where the site's answer of now
                # tells it; else the batch system's own words below. The user's jobs are
                # counted anew (the check before counted these n as in the queue), and
                # forgotten after (none of these was submitted).
                with self._caps_lock:
                    self._user_jobs_cache = None
                try:
                    await asyncio.to_thread(self._check_caps, n, len(sizes), spec, keep, fresh=True)
                finally:
                    with self._caps_lock:
                        self._user_jobs_cache = None
        if errors and ids:
            # The accepted jobs are in the ledger and will join; say why the others were not.
            raise PartlySubmittedError(ids, n, errors[0])
        if errors:
            raise errors[0]
        return ids

    # ---- the site's caps on the user's jobs ----------------------------------------------

    def _caps(self, spec: JobSpec) -> list[Cap]:
        """The site's caps on jobs of ``spec`` (commands: sacctmgr takes 0.2 s a call here),
        asked at most every CAPS_TTL seconds for each scope (account, partition, QOS); one
        asker at a time, the others get its answer."""
        with self._caps_lock:
            now = time.monotonic()
            scope = self.system.caps_scope(spec)
            cached = self._caps_cache.get(scope)
            if cached is None or now - cached[0] > CAPS_TTL:
                cached = self._caps_cache[scope] = (now, self.system.caps(spec))
            return cached[1]

    def _ask_the_site(self) -> None:
        """What the first submission needs from the batch system, asked while nobody waits:
        its caps, the limits on one job of the session's own, and its largest array (called
        in a thread when the keeper starts; sacctmgr takes 0.2 s a call here)."""
        try:
            with self.system.one_look():
                self._caps(self.config.spec)
                if self.config.scheduler_here:  # else up checked them
                    key = json.dumps(self.config.spec.to_dict(), sort_keys=True)
                    self._limits[key] = (time.monotonic(), self.system.job_limits(self.config.spec))
            self.system.array_limit()
        except Exception as exc:  # a prefetch: asked again when a submission needs it, and said then
            logger.info("could not ask %s about its caps and arrays yet: %s", self.system.name, exc)

    def _user_jobs(self) -> int | None:
        """The user's jobs in the queue (a command), asked at most once per refresh."""
        with self._caps_lock:
            now = time.monotonic()
            cached = self._user_jobs_cache
            if cached is None or now - cached[0] > self.config.refresh:
                cached = self._user_jobs_cache = (now, self.system.user_jobs())
            return cached[1]

    def _forget_caps(self, spec: JobSpec) -> bool:
        """Drop the caps of ``spec``'s scope and the user's job count where they were asked
        more than a moment ago: True when a new answer is to be asked (call in a thread). A
        refusal is never made on an answer a minute old: the newcomer's admin had just
        raised the limit, and dask-hpc kept refusing by the old one for 45 s."""
        scope = self.system.caps_scope(spec)
        with self._caps_lock:
            cached = self._caps_cache.get(scope)
            if cached is None or time.monotonic() - cached[0] < FRESH:
                return False
            self._caps_cache.pop(scope, None)
            self._user_jobs_cache = None
            return True

    def _check_caps(
        self, n: int, submissions: int, spec: JobSpec, keep: bool = False, *, fresh: bool = False
    ) -> None:
        """Refuse ``n`` jobs that would pass a cap on submitted jobs (call in a thread); by the
        site's answer of now (``fresh``), not one kept from earlier."""
        caps = self._caps(spec)
        in_queue = self._user_jobs() if caps else None
        if in_queue is None:
            return
        scoped = self.system.scoped_counts(caps)  # caps of one queue, account or QOS: its jobs
        refusal = cap_refusal(caps, in_queue, n, submissions, scoped)
        if refusal is not None and not fresh and self._forget_caps(spec):
            return self._check_caps(n, submissions, spec, keep, fresh=True)
        if refusal is not None:
            cap, more = refusal
            counted = scoped.get(cap, in_queue)
            raise CapError(
                cap_message(cap, more, n, counted, getpass.getuser(), spec, **self._way_out(spec, caps, keep))
            )
        with self._caps_lock:  # these jobs are in the queue now, for the next ask within the refresh
            if self._user_jobs_cache is not None:
                at, count = self._user_jobs_cache
                self._user_jobs_cache = (at, None if count is None else count + n)

    def _check_running_caps(self, n: int, spec: JobSpec, keep: bool, *, fresh: bool = False) -> None:
        """Refuse ``n`` jobs that could not all run at once beside this session's own under a
        cap on running jobs (call in a thread): they would wait for the session's workers'
        walltimes. Replacements of kept jobs are not checked: they wait for the jobs they
        replace to end, as they should. By the site's answer of now, as :meth:`_check_caps`."""
        caps = self._caps(spec)
        held = self._held_specs()
        refusal = running_cap_refusal(caps, spec, n, session_holds(held), self._scoped_holds(caps, held))
        if refusal is not None and not fresh and self._forget_caps(spec):
            return self._check_running_caps(n, spec, keep, fresh=True)
        if refusal is not None:
            cap, more = refusal
            way = self._way_out(spec, caps, keep)
            raise CapError(running_cap_message(cap, more, n, getpass.getuser(), spec, **way))

    def _scoped_holds(self, caps: list[Cap], specs: list[JobSpec]) -> dict[Cap, dict[str, int]]:
        """For each cap on running jobs of some of the user's jobs (Cap.scope: a partition's
        QOS), what the session's jobs among ``specs`` hold: the scheduler's job in another
        partition is not one of them."""
        return {
            cap: session_holds([s for s in specs if self.system.in_scope(s, cap.scope)])
            for cap in caps
            if cap.running_only and cap.scope
        }

    def _held_specs(self) -> list[JobSpec]:
        """The specs of the jobs this session holds: its scheduler's (unless it runs outside
        a job) and its worker jobs' (a job being replaced not counted: it is leaving)."""
        scheduler = [] if self.config.scheduler_here else [self.config.scheduler_spec]
        jobs, specs = dict(self.jobs), dict(self.specs)  # copies: read from a thread, changed in the loop
        held = [job_id for job_id, record in jobs.items() if record.counted]
        return [*scheduler, *(specs.get(job_id, self.config.spec) for job_id in held)]

    def _way_out(self, spec: JobSpec, caps: list[Cap], keep: bool) -> dict[str, Any]:
        """What a cap's line needs for its way out (call in a thread): the session's name and
        spec (the commands carry the add's own options), the launcher, the most nodes a job,
        and whether a command's jobs fit under the caps on what running jobs hold."""
        limits = self.system.job_limits(spec)
        running = [cap for cap in caps if cap.running_only]
        held = self._held_specs()
        holds, scoped = session_holds(held), self._scoped_holds(running, held)
        return {
            "several_nodes": self.system.node_launch is not None,
            "session": self.config.name,
            "base": self.config.spec,
            "max_nodes": min((limit.most for limit in limits if limit.what == "node"), default=None),
            "keep": keep,
            # A way out the site would refuse (a node larger than its largest) is no way out.
            "fits": lambda way, count: (
                running_cap_refusal(running, way, count, holds, scoped) is None
                and job_limit_message(limits, way, self.system.name) is None
            ),
        }

    def _cap_of(self, pool: str | None, spec: JobSpec) -> tuple[int, Cap] | None:
        """The most jobs of ``spec`` that a pool (None: the session's own jobs) may hold under
        the site's caps, beside what the session's scheduler and its other jobs (the other
        pools') hold; None where no cap bounds it (call in a thread)."""
        caps = self._caps(spec)
        in_queue = self._user_jobs() if caps else None
        if in_queue is None:
            return None
        scheduler = [] if self.config.scheduler_here else [self.config.scheduler_spec]
        jobs, specs = dict(self.jobs), dict(self.specs)  # copies: read from a thread, changed in the loop
        mine = sum(1 for record in jobs.values() if record.counted and record.pool == pool)
        others = [specs.get(j, self.config.spec) for j, r in jobs.items() if r.counted and r.pool != pool]
        holds = session_holds([*scheduler, *others])
        scoped_holds = self._scoped_holds(caps, [*scheduler, *others])
        return capped_jobs(caps, in_queue, mine, spec, holds, self.system.scoped_counts(caps), scoped_holds)

    async def _end_jobs(self, job_ids: list[str], *, retire: bool) -> None:
        if not job_ids:
            return
        for job_id in job_ids:
            record = self.jobs[job_id]
            self.jobs[job_id] = replace(record, removed=True)
        self._save()
        addresses = [a for j in job_ids for a in self.workers_of.get(j, ())]
        if retire and addresses:
            assert self.scheduler is not None
            # Moves the data held only by these workers to the others, then closes them.
            retiring = asyncio.ensure_future(
                self.scheduler.retire_workers(
                    workers=addresses,
                    close_workers=True,
                    remove=True,
                    stimulus_id=f"dask-hpc-remove-{time.time()}",
                )
            )
            if not await self._retired(retiring, addresses):
                # Ended anyway: workers whose data has not moved for a minute do not answer;
                # what they held is computed again where a task still needs it.
                logger.warning(
                    "the workers of job %s did not hand over their data within %g s: ended anyway",
                    ", ".join(job_ids),
                    RETIRE_TIMEOUT,
                )
        await asyncio.to_thread(self.system.cancel, job_ids)
        await self._refresh(job_ids)  # so that a status right after shows them ending or gone

    async def _retired(self, retiring: asyncio.Future[Any], addresses: list[str]) -> bool:
        """Wait for ``retiring`` while its workers' data moves: True once it is done; False,
        and it cancelled, once no key held only by them has moved for RETIRE_TIMEOUT seconds
        (a retirement of much data takes as long as it moves)."""
        assert self.scheduler is not None
        scheduler = self.scheduler

        def unique() -> int:
            found = (scheduler.workers.get(a) for a in addresses)
            return sum(
                1 for ws in found if ws is not None for ts in ws.has_what if len(ts.who_has or ()) == 1
            )

        left, moved = unique(), time.monotonic()
        while not retiring.done():
            await asyncio.wait({retiring}, timeout=min(5.0, RETIRE_TIMEOUT / 2))
            now = unique()
            if now < left:
                left, moved = now, time.monotonic()
            elif not retiring.done() and time.monotonic() - moved >= RETIRE_TIMEOUT:
                retiring.cancel()
                return False
        return True

    def _held_bytes(self) -> dict[str, int]:
        assert self.scheduler is not None
        held: dict[str, int] = {}
        for job_id, addresses in self.workers_of.items():
            held[job_id] = sum(
                self.scheduler.workers[a].nbytes for a in addresses if a in self.scheduler.workers
            )
        return held

    async def _refresh(self, job_ids: list[str] | None = None) -> None:
        """Ask the batch system about every live job (or these), in one call."""
        live = [j for j in (job_ids or self.jobs) if self.jobs[j].live]
        if not live:
            return
        try:
            statuses = await asyncio.to_thread(self.system.query, live)
        except DaskHPCError as exc:
            logger.warning("could not query %s: %s", self.system.name, exc)
            return
        now = time.time()
        changed = False
        for job_id, status in statuses.items():
            record = self.jobs.get(job_id)
            if record is None:
                continue
            lagging = status.state in (JobState.PENDING, JobState.UNKNOWN) and not record.removed
            if lagging and self.workers_of.get(job_id):
                continue  # its workers are connected: it runs, whatever a lagging queue says
            new = record.update(status, now)
            if new != record:
                self.jobs[job_id] = new
                changed = True
                if new.keep and not new.removed and new.joined is None and record.live and not new.live:
                    self._failed(_ended_before_joining(new, self.session.name))
                    self._replacement_failed(job_id)
        if changed:
            self._save()

    async def _adapt_step(self) -> None:
        if self.pool_adapts and self.scheduler is not None and not self._lock.locked():
            try:
                async with self._lock:
                    await self._pool_adapt_step()
            except DaskHPCError as exc:
                self._failed(f"adapt of a pool: {exc}")
        # Why not distributed's AdaptiveCore (whose target, adaptive_target(), this uses):
        # it counts workers and scales down by naming workers to close, after its wait_count
        # of intervals. Here the unit is a batch job: a pending job has no worker yet (it
        # must count, or every interval would submit again), a job of several processes
        # ends whole or not at all, a kept job leaving at its walltime is replaced rather
        # than counted twice (decisions.scale_steps), and a submission that fails backs off
        # (decisions.Backoff) under the same lock as scale and add. The close counts below are
        # AdaptiveCore's wait_count, per job (decisions.choose_removals picks which).
        if self.adapt_bounds is None or self._lock.locked() or self.scheduler is None:
            return
        now = time.monotonic()
        if now - self._adapted_at < self.adapt_interval - 0.01:  # steps come every ADAPT_INTERVAL
            return
        self._adapted_at = now
        live = self._pool_jobs(self.adapt_spec.pool)  # adapt's pool only: the others are theirs
        up, down = scale_steps(live, self._adapt_target(capped=False))
        if up:  # the caps bound what adapt asks for, never what it keeps
            await self._cap_adapt()
            up, _ = scale_steps(live, self._adapt_target())
        if not down:
            self.close_counts.clear()
        try:
            if up:
                if not self.backoff.may_submit(time.time()):
                    return  # failures before: wait (and after a few identical ones, stop)
                async with self._lock:
                    await self._adapt_up()
            elif down:
                await self._adapt_down(live, down)
        except DaskHPCError as exc:
            self._failed(f"adapt: {exc}")

    def _adapt_target(self, capped: bool = True) -> int:
        """The jobs adapt wants; ``capped``: no more than the site's caps leave the session
        (as last asked: :meth:`_cap_adapt`, whenever adapt wants more than it has)."""
        assert self.scheduler is not None and self.adapt_bounds is not None
        lo, hi = self.adapt_bounds
        target = adapt_target_jobs(self.scheduler.adaptive_target(), self.adapt_spec.workers, lo, hi)
        return target if self.adapt_cap is None or not capped else min(target, self.adapt_cap[0])

    async def _cap_adapt(self) -> None:
        """Before adapt asks for more jobs: the most the site's caps leave this session
        (adapt never asks past them; status says when they hold it back)."""
        self.adapt_cap = await asyncio.to_thread(self._cap_of, self.adapt_spec.pool, self.adapt_spec)

    async def _adapt_up(self) -> list[str]:
        """Submit what adapt's target asks for beyond the live jobs (call under the lock)."""
        live = self._pool_jobs(self.adapt_spec.pool)
        up, _ = scale_steps(live, self._adapt_target(capped=False))
        if up:
            await self._cap_adapt()
            up, _ = scale_steps(live, self._adapt_target())
        return await self._submit(up, self.adapt_spec, keep=True) if up else []

    def _replacement_failed(self, job_id: str) -> None:
        """A replacement that ended before its worker joined replaces nothing: the job it was
        for needs another (after the backoff), whether it still runs or is gone."""
        for old_id, record in list(self.jobs.items()):
            if record.replaced_by == job_id:
                self.jobs[old_id] = replace(record, replaced_by=None)
                logger.warning("job %s's replacement %s failed: it will get another", old_id, job_id)

    def _refused(self, by: str, error: BaseException) -> None:
        """Remember the last submission that failed, whoever asked for it, for ``status``."""
        self.last_refusal = protocol.LastRefusal(by, " ".join(str(error).split()), time.time())

    def _failed(self, words: str) -> None:
        """An automatic submission failed: remember it, so that the next ones wait, then stop."""
        self._refused("automatic", SessionError(words))
        self.backoff = self.backoff.failed(words, time.time())
        if self.backoff.stopped:
            logger.error(
                "automatic submissions stopped after %d identical failures in a row: %s; "
                "run dask-hpc adapt (or scale) again once fixed",
                self.backoff.same,
                words,
            )
        else:
            logger.warning("%s (next automatic submission in %.0f s)", words, self.backoff.wait)

    async def _adapt_down(self, live: list[JobRecord], down: int) -> None:
        assert self.scheduler is not None
        # Jobs whose workers the scheduler would close now (idle, little data), grouped by job.
        idle_names = self.scheduler.workers_to_close(
            key=lambda ws: job_of_worker(str(ws.name), self.jobs) or ws.address, attribute="name"
        )
        idle = {job_of_worker(str(name), self.jobs) for name in idle_names}
        candidates = [r for r in live if r.job_id in idle or r.started is None]
        chosen = choose_removals(candidates, down, self._held_bytes())
        firm = []
        for job_id in chosen:
            self.close_counts[job_id] = self.close_counts.get(job_id, 0) + 1
            if self.close_counts[job_id] >= self.adapt_wait_count:
                firm.append(job_id)
        for job_id in list(self.close_counts):
            if job_id not in chosen or job_id in firm:
                del self.close_counts[job_id]
        if firm:
            async with self._lock:
                await self._end_jobs(firm, retire=True)

    # ---- kept jobs: replacements ahead of walltimes --------------------------------

    def _replacement_plans(self) -> dict[str, float]:
        """When each kept job without a replacement will get one (seconds since the epoch)."""
        held = self._held_bytes()
        return replacement_times(
            self.jobs.values(), lambda r: retire_margin(r.walltime, held.get(r.job_id, 0))
        )

    async def _keep_step(self) -> None:
        """Submit replacements for kept jobs near their end (or lost), and end the jobs
        whose replacement has joined, after moving their data to the other workers."""
        if self.scheduler is None or self._lock.locked():
            return
        now = time.time()
        records = list(self.jobs.values())
        due = [job_id for job_id, at in self._replacement_plans().items() if at <= now]
        # After failures, replacements wait too (and stop after a few identical ones): no sbatch storm.
        old = [*due, *lost_kept_jobs(records)] if self.backoff.may_submit(now) else []
        handed_over = [
            j.job_id
            for j in records
            if j.replaced_by and j.live and not j.removed and self.workers_of.get(j.replaced_by)
        ]
        if not old and not handed_over:
            return
        async with self._lock:
            # The jobs due at once, by spec: one submission each (an array where the system has them).
            by_spec: dict[str, tuple[JobSpec, list[str]]] = {}
            for job_id in old:
                spec = self.specs.get(job_id, self.config.spec)
                by_spec.setdefault(json.dumps(spec.to_dict(), sort_keys=True), (spec, []))[1].append(job_id)
            for spec, olds in by_spec.values():
                try:
                    news = await self._submit(len(olds), spec, keep=True)
                except CapError as exc:
                    # At the site's cap: the old jobs run to their walltime's margin and leave,
                    # then they are lost kept jobs, replaced once there is room. Not a failure
                    # of the backoff's: nothing was refused, nothing storms.
                    logger.info("replacements of %s wait for room under the cap: %s", ", ".join(olds), exc)
                    break
                except PartlySubmittedError as exc:
                    news = exc.job_ids  # those accepted replace as many; the others wait for the backoff
                    self._failed(f"the replacement of jobs {', '.join(olds)}: {exc}")
                except DaskHPCError as exc:
                    self._failed(
                        f"the replacement of job{'s' if len(olds) > 1 else ''} {', '.join(olds)}: {exc}"
                    )
                    break  # the others wait for the backoff too
                for job_id, new in zip(olds, news, strict=False):
                    self.jobs[job_id] = replace(self.jobs[job_id], replaced_by=new)
                    logger.info("job %s: replacement %s submitted", job_id, new)
                self._save()
                if len(news) < len(olds):
                    break
            if handed_over:
                logger.info("replacements joined: retiring jobs %s", ", ".join(handed_over))
                try:
                    await self._end_jobs(handed_over, retire=True)
                except DaskHPCError as exc:
                    logger.warning("could not end replaced jobs: %s", exc)

    def _save(self) -> None:
        # Written at most once a second: a thousand workers joining must not mean a thousand writes.
        self._dirty = True

    def _flush(self) -> None:
        if self._dirty:
            self._dirty = False
            save_ledger(self.session.ledger_file, self.jobs)


def _reported_end(ws: Any) -> float | None:
    """The walltime end a worker reported (dask_hpc.worker.retirement), if it did."""
    value = (getattr(ws, "metrics", None) or {}).get(END_METRIC)
    return float(value) if isinstance(value, int | float) else None


def _dashboard(scheduler: Scheduler, host: str) -> str | None:
    port = dashboard_port(scheduler)
    return None if port is None else f"http://{host}:{port}/status"


def _as_json(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as it reads back from JSON (tuples are lists there), so records compare equal."""
    plain: dict[str, Any] = json.loads(json.dumps(data))
    return plain


def _ended_before_joining(record: JobRecord, session: str) -> str:
    """Why a kept job counts as a failed submission, in words the user can act on."""
    detail = record.reason or ("" if record.exit_code is None else f"exit code {record.exit_code}")
    return (
        f"job {record.job_id} ended before its worker joined: {record.state.value}"
        + (f" ({detail})" if detail else "")
        + f"; see dask-hpc logs {record.job_id} --name {session}"
    )


_RECORD_FIELDS = [f.name for f in fields(JobRecord)]
