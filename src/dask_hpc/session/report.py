"""What ``dask-hpc status`` and ``BatchCluster.status()`` report about a session: typed, and
as the JSON of ``dask-hpc status --json`` (:meth:`SessionStatus.to_dict`).

With its scheduler answering, most of it is the keeper's own
:class:`~dask_hpc.keeper.protocol.KeeperStatus`; without, the job ledger with the
states the batch system gives in one query.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dask_hpc.keeper.protocol import JobReport, KeeperStatus

__all__ = ["SchedulerReport", "SessionStatus"]


@dataclass(frozen=True)
class SchedulerReport:
    """The session's scheduler job: as the batch system sees it, and whether it answers."""

    job_id: str | None
    state: str | None  # the batch system's state (JobState's value); None: not known
    reason: str | None
    node: str | None
    answering: bool = False
    address: str | None = None
    dashboard: str | None = None
    walltime_left: float | None = None  # seconds
    in_process: bool = False  # it runs (ran) in a Python process: BatchCluster(scheduler="local")


@dataclass(frozen=True)
class SessionStatus:
    """A session as ``dask-hpc status`` shows it. ``keeper`` is None when no scheduler answers:
    then ``jobs`` come from the ledger, with no workers."""

    name: str
    system: str
    directory: str
    down: bool
    security: str  # "tls" or "insecure"
    scheduler: SchedulerReport
    jobs: list[JobReport] = field(default_factory=list)
    keeper: KeeperStatus | None = None
    web: dict[str, Any] | None = None  # where the web pages are (web.json), when it answers

    @property
    def workers(self) -> int:
        return 0 if self.keeper is None else self.keeper.workers

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``dask-hpc status --json``: the keeper's fields beside the session's."""
        data: dict[str, Any] = {
            "name": self.name,
            "system": self.system,
            "directory": self.directory,
            "down": self.down,
            "security": self.security,
            "scheduler": asdict(self.scheduler),
        }
        if self.keeper is None:
            asked_of_it = ("address", "dashboard", "walltime_left")
            data["scheduler"] = {k: v for k, v in data["scheduler"].items() if k not in asked_of_it}
            return {
                **data,
                # replace_in is the keeper's plan: without a keeper there is none to show
                "jobs": [{k: v for k, v in j.to_dict().items() if k != "replace_in"} for j in self.jobs],
                "workers": 0,
                "threads": 0,
                "memory": 0,
                "adapt": None,
                "web": None,
            }
        keeper = {k: v for k, v in self.keeper.to_dict().items() if k not in ("address", "dashboard")}
        return {**data, **keeper, "web": self.web}
