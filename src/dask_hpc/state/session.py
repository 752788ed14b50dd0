"""A session: one named deployment (a scheduler job and its worker jobs) and its state dir.

The state dir holds what every part of the session needs to find: the session's
settings (written by ``up``), the scheduler file (written by the scheduler), the
job ledger (written by the keeper only), job scripts and logs. It must be on a
filesystem that the compute nodes share; it is private to the user (0700/0600).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dask_hpc.config import resolve
from dask_hpc.errors import SessionError, UnknownSessionError
from dask_hpc.files import private_directory, write_private
from dask_hpc.spec import JobSpec

__all__ = [
    "DEFAULT_NAME",
    "SESSIONS_VARIABLE",
    "SESSION_VARIABLE",
    "Session",
    "SessionConfig",
    "list_sessions",
    "sessions_root",
]

SESSIONS_VARIABLE = "DASK_HPC_SESSIONS"
#: The session a JupyterLab started by ``up --jupyter`` belongs to (``connect()`` reads it).
SESSION_VARIABLE = "DASK_HPC_SESSION"
DEFAULT_NAME = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def sessions_root() -> Path:
    """Where sessions live: ``$DASK_HPC_SESSIONS``, else the configured ``dask-hpc.state-dir``
    (:mod:`dask_hpc.config`; ``$VAR`` and ``~`` expanded), else ``~/.dask-hpc/sessions``."""
    if os.environ.get(SESSIONS_VARIABLE):
        return Path(os.environ[SESSIONS_VARIABLE]).expanduser()
    configured = resolve(only=("state-dir",)).get("state-dir")  # a site may say /work/$USER/dask-hpc
    return Path(
        os.path.expandvars(configured) if configured else Path.home() / ".dask-hpc" / "sessions"
    ).expanduser()


@dataclass(frozen=True)
class SessionConfig:
    """What ``up`` decided for a session; read by the scheduler job and every command."""

    name: str
    system: str
    spec: JobSpec  # the default for worker jobs; `add` may change fields per call
    scheduler_spec: JobSpec
    interface: str | None = None  # None: chosen automatically in the scheduler's job
    submit_from: str = "auto"  # "scheduler", "client", or "auto" (the scheduler if it can)
    refresh: float = 5.0  # seconds between the keeper's queries of the batch system
    python: str = sys.executable
    created: float = field(default_factory=time.time)
    scheduler_job_id: str | None = None
    insecure: bool = False  # no TLS: anyone who reaches the scheduler can run code as the user
    jupyter: bool = False  # JupyterLab beside the scheduler
    jupyter_dir: str | None = None  # JupyterLab's root folder (where `up` ran)
    login_host: str | None = None  # [user@]host for the tunnel line, as given to `up`
    up_host: str | None = None  # the host `up` ran on: the tunnel's login host by default
    down: bool = False  # set by `down`: nothing of this session should run any more
    # The site's settings for its batch system (BatchSystem.settings), as `up` resolved them.
    system_settings: dict[str, Any] = field(default_factory=dict)
    # The scheduler's protocol where it is not tls or tcp (ucx, ws): workers get --protocol.
    protocol: str | None = None
    # The scheduler runs in a Python process, not a job: BatchCluster(scheduler="local").
    scheduler_here: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("spec", "scheduler_spec")}
        return {**data, "spec": self.spec.to_dict(), "scheduler_spec": self.scheduler_spec.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionConfig:
        return cls(
            **{
                **data,
                "spec": JobSpec.from_dict(data["spec"]),
                "scheduler_spec": JobSpec.from_dict(data["scheduler_spec"]),
            }
        )

    def but(self, **changes: Any) -> SessionConfig:
        return replace(self, **changes)


class Session:
    """The files of one session. Cheap to make: touches nothing until asked."""

    def __init__(self, name: str = DEFAULT_NAME, root: Path | None = None) -> None:
        if not _NAME.match(name):
            raise SessionError(
                f"invalid session name {name!r}: use up to 64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        self.name = name
        self.root = (root or sessions_root()).expanduser().absolute()
        self.directory = self.root / name

    @classmethod
    def at(cls, directory: Path) -> Session:
        """The session whose state dir is ``directory`` (as passed to a scheduler job)."""
        directory = directory.absolute()
        return cls(directory.name, directory.parent)

    @property
    def config_file(self) -> Path:
        return self.directory / "session.json"

    @property
    def scheduler_file(self) -> Path:
        return self.directory / "scheduler.json"

    @property
    def ledger_file(self) -> Path:
        return self.directory / "jobs.json"

    @property
    def error_file(self) -> Path:
        """One line from the scheduler job when it cannot start (e.g. a wrong interface)."""
        return self.directory / "scheduler.error"

    @property
    def web_file(self) -> Path:
        """Where the dashboard and JupyterLab are (node, ports, token): written by the scheduler job."""
        return self.directory / "web.json"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def scripts(self) -> Path:
        return self.directory / "scripts"

    def exists(self) -> bool:
        return self.config_file.exists()

    def prepare(self) -> None:
        """Create the state dir (0700) and its folders."""
        for path in (self.root, self.directory, self.logs, self.scripts):
            private_directory(path)
        self.directory.chmod(0o700)

    def set_aside_ledger(self) -> Path | None:
        """A past life of this name: its ledger kept beside as ``jobs-<time>.json``, so that a
        new scheduler starts with no jobs (an old live one would be counted and scaled on)."""
        if not self.ledger_file.exists():
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):  # two lives ending in one second keep both ledgers
            aside = self.directory / f"jobs-{stamp}{'' if n == 0 else f'-{n}'}.json"
            if not aside.exists():
                self.ledger_file.replace(aside)
                return aside
        raise SessionError(f"session {self.name!r}: no free name for its old ledger in {self.directory}")

    def read_config(self) -> SessionConfig:
        try:
            return SessionConfig.from_dict(json.loads(self.config_file.read_text()))
        except FileNotFoundError:
            raise UnknownSessionError(self.name, list_sessions(self.root), str(self.root)) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise SessionError(f"session {self.name!r}: unreadable {self.config_file}: {exc}") from None

    def write_config(self, config: SessionConfig) -> None:
        write_private(self.config_file, config.to_dict())

    def scheduler_address(self) -> str | None:
        """The address in the scheduler file, if the scheduler has written one."""
        try:
            address = json.loads(self.scheduler_file.read_text()).get("address")
        except (OSError, ValueError):
            return None
        return address if isinstance(address, str) else None

    def scheduler_error(self) -> str | None:
        try:
            return self.error_file.read_text().strip() or None
        except OSError:
            return None

    def clear_scheduler_files(self) -> None:
        """Forget the last scheduler's address and error, before a new one starts."""
        self.scheduler_file.unlink(missing_ok=True)
        self.error_file.unlink(missing_ok=True)
        self.web_file.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"Session({self.name!r}, {str(self.directory)!r})"


def list_sessions(root: Path | None = None) -> list[str]:
    """Names of the sessions under ``root`` (those with settings), sorted."""
    root = root or sessions_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "session.json").is_file())
