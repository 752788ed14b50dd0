"""JobSpec: the resources of one batch job, parsed and validated in one place.

Everything that turns a user's text ("1h30m", "8GB") into numbers lives here, so
that every batch system module renders from the same frozen, checked values.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from dask_hpc.errors import SpecError, UnknownOptionError
from dask_hpc.files import private_directory

__all__ = [
    "JobSpec",
    "absolute_path",
    "format_memory",
    "format_walltime",
    "make_log_directory",
    "parse_arguments",
    "parse_boolean",
    "parse_memory",
    "parse_walltime",
]

DEFAULT_SHEBANG = "#!/usr/bin/env bash"
#: The worker modules that are ``dask worker`` itself: dask-hpc runs its own (which names
#: the workers after their job and retires them before the walltime).
DASK_WORKER_MODULES = ("distributed.cli.dask_worker", "dask_hpc.worker")
WALLTIME_FORMS = "use HH:MM:SS, MM:SS, D-HH:MM:SS, or units such as 90m, 1h30m, 2h, 45s, 1d"
MEMORY_FORMS = "use a number with a unit, such as 8GB, 8GiB, 8000MB, 1.5TB"

_COLON = re.compile(r"^(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")
_UNITS = re.compile(
    r"^(?:(?P<d>\d+(?:\.\d+)?)d)?(?:(?P<h>\d+(?:\.\d+)?)h)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)m(?:in)?)?(?:(?P<s>\d+(?:\.\d+)?)s)?$"
)
_MEMORY = re.compile(r"^\d+(?:\.\d*)?\s*[a-zA-Z]+$")
# Names of environment variables a job script may export.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
#: A pool's name: it names a worker resource (pool-<name>) and goes on command lines.
#: A class's dotted path: a module, a dot, the class.
_CLASS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
#: dask-cuda's worker: it holds a nanny a GPU, and is run by its own command (dask cuda worker).
CUDA_WORKER = "dask_cuda.CUDAWorker"
#: ``dask worker`` options that ``dask cuda worker`` has not (dask-cuda 26.10, distributed
#: 2026.8; tests/recorded/dask-cuda-worker-options.txt), but --nworkers and --nanny, which
#: dask_hpc.worker.classes drops: it starts a worker a GPU, each under a nanny, no lifetime.
NOT_IN_DASK_CUDA = (
    "--lifetime",
    "--lifetime-stagger",
    "--lifetime-restart",
    "--no-lifetime-restart",
    "--nanny-port",
    "--preload-nanny",
    "--scheduler-sni",
    "--no-nanny",
)


def dask_cuda_lacks(arguments: Iterable[str]) -> list[str]:
    """The options among ``arguments`` (``dask worker``'s) that ``dask cuda worker`` has not."""
    return [arg.split("=", 1)[0] for arg in arguments if arg.split("=", 1)[0] in NOT_IN_DASK_CUDA]


_POOL = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")


def parse_walltime(value: str | int | float | timedelta, *, two_fields: str = "MM:SS") -> int:
    """Walltime in whole seconds from the forms HPC users write.

    ``"1:30:00"``, ``"30:00"``, ``"2-00:00:00"``, ``"2-12"`` (D-HH, as SLURM),
    ``"90m"``, ``"1h30m"``, ``"2h"``; an int or float is seconds. Two fields are read
    as the batch system reads them (``two_fields``): ``"MM:SS"`` as ``sbatch --time``,
    PBS and Grid Engine do, ``"HH:MM"`` as LSF's ``bsub -W`` (and dask-jobqueue's
    LSFCluster) does. A bare number in a string is refused: SLURM reads it as
    minutes, others as seconds.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise SpecError("walltime", value, WALLTIME_FORMS)
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _walltime_from_text(value.strip().lower(), two_fields)
    else:
        raise SpecError("walltime", value, WALLTIME_FORMS)
    if not math.isfinite(seconds) or seconds < 1:
        raise SpecError("walltime", value, "must be at least one second; " + WALLTIME_FORMS)
    return math.ceil(seconds)


def _walltime_from_text(text: str, two_fields: str = "MM:SS") -> float:
    match = _COLON.match(text)
    if match and (match["b"] is not None or match["d"] is not None):
        d = int(match["d"] or 0)
        parts = [int(p) for p in (match["a"], match["b"], match["c"]) if p is not None]
        if match["d"] is not None:
            # D-HH, D-HH:MM, D-HH:MM:SS
            parts += [0] * (3 - len(parts))
            h, m, s = parts
        elif len(parts) == 2 and two_fields == "HH:MM":
            (h, m), s = parts, 0
        elif len(parts) == 2:
            h, (m, s) = 0, parts
        else:
            h, m, s = parts
        if m >= 60 or s >= 60 or (d and h >= 24):
            over = "minutes" if m >= 60 else "seconds" if s >= 60 else "hours of a D-HH form"
            raise SpecError(
                "walltime",
                text,
                f"its {over} pass {23 if over.startswith('hours') else 59}; {WALLTIME_FORMS}",
            )
        return d * 86400 + h * 3600 + m * 60 + s
    if text.isdigit() and int(text) == 0:
        raise SpecError("walltime", text, "must be at least one second; " + WALLTIME_FORMS)
    if text.isdigit():
        raise SpecError(
            "walltime",
            text,
            f"a bare number is ambiguous (SLURM and LSF read minutes, PBS and Grid Engine seconds, "
            f"OAR hours); write {text}m, {text}s or {text}h",
        )
    match = _UNITS.match(text)
    if text and match and any(match.groups()):
        days, hours, minutes, seconds = (float(g or 0) for g in match.groups())
        return days * 86400 + hours * 3600 + minutes * 60 + seconds
    raise SpecError("walltime", text, WALLTIME_FORMS)


def format_walltime(seconds: int) -> str:
    """``HH:MM:SS``, hours past 24 included, as PBS, SGE and SLURM all accept it."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def format_memory(nbytes: int) -> str:
    """``nbytes`` as ``--memory`` takes it back: ``20GiB``, ``1536MiB``, else whole MB
    (rounded up, so that it is never less)."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= size and nbytes % size == 0:
            return f"{nbytes // size}{unit}"
    return f"{math.ceil(nbytes / 10**6)}MB"


def parse_memory(value: str | int, field: str = "memory") -> int:
    """Memory in bytes. ``"8GB"`` is 8*10**9 and ``"8GiB"`` 8*2**30, as in dask. ``field``:
    the option's name in the error (LSF's ``mem``, HTCondor's ``disk`` are sizes too)."""
    try:
        return _memory(value)
    except SpecError as exc:
        raise SpecError(field, value, exc.accepted) from None


def _memory(value: str | int) -> int:
    if isinstance(value, bool):
        raise SpecError("memory", value, MEMORY_FORMS)
    if isinstance(value, int):
        nbytes = value
    elif isinstance(value, str) and _MEMORY.match(value.strip()):
        try:
            from dask.utils import parse_bytes  # here: importing dask costs 0.2 s, most commands need not

            nbytes = parse_bytes(value.strip())
        except ValueError:
            raise SpecError("memory", value, MEMORY_FORMS) from None
    else:
        raise SpecError("memory", value, MEMORY_FORMS)
    if nbytes < 2**20:
        raise SpecError("memory", value, "must be at least 1 MiB; " + MEMORY_FORMS)
    return nbytes


#: The fields ``dask-hpc add`` has an option for, and the option (cli/options.py's).
COMMAND_OPTIONS = {
    "nodes": "--nodes",
    "gpus": "--gpus",
    "pool": "--pool",
    "cores": "--cores",
    "processes": "--processes",
    "memory": "--memory",
    "walltime": "--walltime",
    "queue": "--queue",
    "account": "--account",
    "job_name": "--job-name",
    "job_extra_directives": "--job-extra-directive",
    "job_script_prologue": "--prologue",
    "job_script_epilogue": "--epilogue",
    "job_directives_skip": "--job-directive-skip",
    "environment": "--env",
    "log_directory": "--log-directory",
    "local_directory": "--local-directory",
    "worker_extra_args": "--worker-extra-args",
    "worker_class": "--worker-class",
    "shebang": "--shebang",
}


@dataclass(frozen=True)
class JobSpec:
    """The resources of one job. Build it with :meth:`from_options` from user input.

    Field names are dask-jobqueue's where the concept is the same.
    """

    cores: int = 1
    memory: int = 2 * 2**30
    walltime: int = 3600
    processes: int = 1
    queue: str | None = None
    account: str | None = None
    job_name: str = "dask-worker"
    job_extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    log_directory: str | None = None
    #: Substrings of our own directive lines to leave out (dask-jobqueue's name and meaning).
    job_directives_skip: tuple[str, ...] = ()
    #: Shell lines run after the workers end (dask-jobqueue's, on its main branch).
    job_script_epilogue: tuple[str, ...] = ()
    #: The script's first line.
    shebang: str = DEFAULT_SHEBANG
    # What the job runs (dask-jobqueue's names and meanings; ``dask worker``'s options):
    #: Arguments added to ``dask worker`` (``--resources GPU=1``, ``--lifetime 55m``).
    worker_extra_args: tuple[str, ...] = ()
    #: ``dask worker --local-directory``: fast node-local storage (``$TMPDIR`` is the node's).
    local_directory: str | None = None
    #: Seconds a worker waits for the scheduler before it gives up.
    death_timeout: int = 60
    #: A nanny per worker process (restarts a worker that dies); False: ``--no-nanny``.
    nanny: bool = True
    #: The workers' Python; None: the one that started the session.
    python: str | None = None
    #: The module ``python -m`` runs as a worker; None: dask-hpc's ``dask worker``.
    worker_command: str | None = None
    #: Nodes per job: ``cores``, ``memory`` and ``processes`` on each, a worker (processes of them)
    #: on every node, started by the system's launcher (SLURM's srun).
    nodes: int = 1
    #: GPUs on each node, asked in each system's own words (SLURM's --gres=gpu:N, PBS's
    #: ngpus, LSF's -gpu, HTCondor's request_gpus); the workers share them: each gets the
    #: resource ``GPU`` (distributed's name), gpus / processes of it.
    gpus: int = 0
    #: The pool of workers these jobs belong to (``himem``, ``gpu``): each worker carries
    #: the resource ``pool-<name>``, one unit a thread, so that ``dask.annotate(resources=
    #: {"pool-himem": 1})`` routes tasks there; the keeper remembers each pool's spec.
    pool: str | None = None
    #: The class of the workers (a dotted path): a subclass of distributed's ``Worker``
    #: (``dask worker --worker-class``), or ``dask_cuda.CUDAWorker`` (dask-cuda's worker: one
    #: a GPU, run by its own ``dask cuda worker``). None: distributed's; for a job with GPUs,
    #: ``dask_cuda.CUDAWorker`` where the node's Python has dask-cuda and each worker has one
    #: GPU (chosen on the node: ``--worker-class auto`` in the job script).
    worker_class: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.cores, int) or isinstance(self.cores, bool) or self.cores < 1:
            raise SpecError("cores", self.cores, "must be a whole number >= 1")
        if (
            not isinstance(self.processes, int)
            or isinstance(self.processes, bool)
            or not 1 <= self.processes <= self.cores
        ):
            raise SpecError(
                "processes",
                self.processes,
                f"must be a whole number from 1 to cores ({self.cores}); for more processes, give "
                "--cores (cores=) as many or more",
            )
        if not isinstance(self.nodes, int) or isinstance(self.nodes, bool) or self.nodes < 1:
            raise SpecError("nodes", self.nodes, "must be a whole number >= 1")
        if self.pool is not None and (not isinstance(self.pool, str) or not _POOL.match(self.pool)):
            raise SpecError(
                "pool",
                self.pool,
                "a pool's name is a letter, then letters, digits, - or _ (it names a worker resource)",
            )
        if not isinstance(self.gpus, int) or isinstance(self.gpus, bool) or self.gpus < 0:
            raise SpecError("gpus", self.gpus, "must be a whole number >= 0")
        if self.gpus % self.processes:
            raise SpecError(
                "gpus",
                self.gpus,
                f"the {self.processes} worker processes of a node share its GPUs evenly: give "
                f"--processes {self.gpus} (one worker a GPU; with --cores {max(self.cores, self.gpus)} "
                "or more), or a number of GPUs the processes divide",
            )
        for name in ("queue", "account", "log_directory"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise SpecError(name, value, "must be a non-empty string or left out")
            if isinstance(value, str) and "\n" in value:
                raise SpecError(name, value, "must be one line")
        if not self.job_name or "\n" in self.job_name:
            raise SpecError("job_name", self.job_name, "must be a non-empty line of text")
        if "/" in self.job_name:
            # Every system names log files after the job: a "/" would make a path of it.
            raise SpecError("job_name", self.job_name, "cannot contain '/'; use '-' or '_' instead")
        if not self.nanny and self.processes > 1:
            raise SpecError(
                "nanny",
                self.nanny,
                f"several worker processes ({self.processes}) need their nannies; "
                "set processes=1 or keep nanny=True",
            )
        if (
            not isinstance(self.death_timeout, int)
            or isinstance(self.death_timeout, bool)
            or self.death_timeout < 1
        ):
            raise SpecError("death_timeout", self.death_timeout, "must be at least one second")
        if not self.shebang.startswith("#!") or "\n" in self.shebang:
            raise SpecError("shebang", self.shebang, "must be one line starting with #!, e.g. #!/bin/bash -l")
        for name in ("python", "worker_command", "local_directory"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip() or "\n" in value):
                raise SpecError(name, value, "must be one non-empty line or left out")
        if self.worker_command is not None and not _MODULE.match(self.worker_command):
            raise SpecError(
                "worker_command",
                self.worker_command,
                "must be a module that python -m runs, e.g. distributed.cli.dask_worker",
            )
        self._check_worker_class()
        for line in self.job_directives_skip:
            if "\n" in line or not line.strip():
                raise SpecError("job_directives_skip", line, "each must be one non-empty line")
        for line in self.job_extra_directives:
            if "\n" in line or not line.strip():
                raise SpecError("job_extra_directives", line, "each must be one non-empty line")
        for key, _ in self.environment:
            if not _ENV_NAME.match(key):
                raise SpecError(
                    "environment",
                    key,
                    "a name is letters, digits and _, not starting with a digit, e.g. OMP_NUM_THREADS",
                )

    def _check_worker_class(self) -> None:
        if self.worker_class is None:
            return
        if not isinstance(self.worker_class, str) or not _CLASS.match(self.worker_class):
            raise SpecError(
                "worker_class",
                self.worker_class,
                "must be a class's dotted path, e.g. dask_cuda.CUDAWorker or mypackage.MyWorker",
            )
        if self.worker_command is not None and self.worker_command not in DASK_WORKER_MODULES:
            raise SpecError(
                "worker_class",
                self.worker_class,
                f"worker_command {self.worker_command} is a command of its own: give it the class "
                "in worker_extra_args, or leave worker_command out",
            )
        if self.worker_class != CUDA_WORKER:
            return
        # dask-cuda starts a worker for each GPU the job's node shows (CUDA_VISIBLE_DEVICES), each
        # under a nanny of its own: the spec's processes must be its GPUs for the keeper's count.
        if not self.nanny:
            raise SpecError(
                "worker_class", self.worker_class, "dask-cuda's workers run under nannies: leave nanny on"
            )
        if self.gpus < 1 or self.gpus != self.processes:
            raise SpecError(
                "worker_class",
                self.worker_class,
                f"dask-cuda starts one worker a GPU: give --gpus N --processes N (now {self.gpus} "
                f"GPUs, {self.processes} processes), with --cores N or more; or, for jobs without "
                "GPUs, --worker-class distributed.Worker",
            )
        lacking = dask_cuda_lacks(self.worker_extra_args)
        if lacking:
            raise SpecError(
                "worker_class",
                self.worker_class,
                f"dask cuda worker has no {', '.join(lacking)}: leave it out of --worker-extra-args, "
                "or give --worker-class distributed.Worker",
            )

    @property
    def threads_per_process(self) -> int:
        return max(1, self.cores // self.processes)

    @property
    def memory_per_process(self) -> int:
        return self.memory // self.processes

    @property
    def workers(self) -> int:
        """Workers one job brings: ``processes`` on each of its ``nodes``."""
        return self.processes * self.nodes

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any] | None = None, *, walltime_fields: str = "MM:SS", **kwargs: Any
    ) -> JobSpec:
        """Parse user-facing values (strings allowed) into a checked JobSpec.

        ``None`` values are ignored, so CLI options left out keep the defaults.
        Unknown names are refused with the list of known ones. ``walltime_fields``:
        how the batch system reads a walltime of two fields (``BatchSystem.walltime_fields``).
        """
        given = {k: v for k, v in {**(options or {}), **kwargs}.items() if v is not None}
        known = cls.option_names()
        unknown = set(given) - set(known)
        if unknown:
            raise UnknownOptionError(unknown, known)
        values: dict[str, Any] = {}
        for name, value in given.items():
            if name == "walltime":
                values[name] = parse_walltime(value, two_fields=walltime_fields)
            else:
                values[name] = _PARSERS.get(name, _identity)(value)
        return cls(**values)

    def with_options(self, *, walltime_fields: str = "MM:SS", **kwargs: Any) -> JobSpec:
        """A copy with some options changed, parsed as in :meth:`from_options`."""
        changed = JobSpec.from_options(kwargs, walltime_fields=walltime_fields)
        return replace(self, **{k: getattr(changed, k) for k in kwargs if kwargs[k] is not None})

    def command_options(self, base: JobSpec, leave_out: Iterable[str] = ()) -> list[str]:
        """The ``dask-hpc add`` options that make ``base`` (the session's spec) into this one,
        for a command line we print (a cap's way out: the add's own queue, walltime, extra
        directives go with it). Fields the command line has no option for (``nanny``,
        ``python``) are left out, and so are the fields named in ``leave_out``."""
        options: list[str] = []
        for name, flag in COMMAND_OPTIONS.items():
            value = getattr(self, name)
            if name in leave_out or value == getattr(base, name):
                continue
            if name == "walltime":
                options += [flag, format_walltime(value)]
            elif name == "memory":
                options += [flag, format_memory(value)]
            elif name == "environment":
                options += [part for key, text in value for part in (flag, f"{key}={text}")]
            elif name == "worker_extra_args":
                options += [flag, shlex.join(value)]
            elif isinstance(value, tuple):
                options += [part for item in value for part in (flag, item)]
            else:
                options += [flag, str(value)]
        return options

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a JSON file; :meth:`from_dict` reads them back."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        return cls.from_options({k: v for k, v in data.items() if v is not None})

    def describe(self) -> str:
        cores = f"{self.cores} core{'s' if self.cores > 1 else ''}"
        processes = f"{self.processes} worker process{'es' if self.processes > 1 else ''}"
        from dask.utils import format_bytes

        nodes = f" on each of {self.nodes} nodes" if self.nodes > 1 else ""
        gpus = f", {self.gpus} GPU{'s' if self.gpus > 1 else ''}" if self.gpus else ""
        walltime = format_walltime(self.walltime)
        return f"{cores}{gpus}, {format_bytes(self.memory)}, walltime {walltime}, {processes}{nodes}"


def _identity(value: Any) -> Any:
    return value


def _whole(name: str) -> Any:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise SpecError(name, value, "must be a whole number")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise SpecError(name, value, "must be a whole number") from None
        if str(number) != str(value).strip() and not isinstance(value, int):
            raise SpecError(name, value, "must be a whole number")
        return number

    return parse


def _lines(name: str, *, mapping_lines: bool = False) -> Any:
    """A list of lines. A mapping is ``key = value`` lines where ``mapping_lines`` (extra
    directives: HTCondor's submit description, which dask-jobqueue's HTCondorCluster takes
    as a dict), else refused: iterating it would keep its keys and lose its values."""

    def parse(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            return (value,)
        if isinstance(value, Mapping):
            if not mapping_lines:
                raise SpecError(name, dict(value), "must be a list of strings, not a mapping")
            return tuple(f"{k} = {v}" for k, v in value.items())
        if isinstance(value, Iterable):
            return tuple(str(v) for v in value)
        raise SpecError(name, value, "must be a list of strings")

    return parse


def parse_arguments(name: str, value: Any) -> tuple[str, ...]:
    """Command-line arguments: a list of strings (as dask-jobqueue takes them), or one string
    split as a shell would (``"--resources GPU=1"``, as a flag or a config file gives it)."""
    import shlex

    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise SpecError(name, value, f"cannot be split as a shell would ({exc})") from None
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        words = tuple(value)
        if all(isinstance(w, str | int | float) and not isinstance(w, bool) for w in words):
            return tuple(str(w) for w in words)  # dask-jobqueue writes each with str()
    raise SpecError(name, value, "must be a list of arguments, e.g. ['--resources', 'GPU=1']")


def parse_boolean(name: str, value: Any) -> bool:
    """True or False, or the text ``true``/``false`` (an environment variable's). Other text is
    refused: dask-jobqueue reads any non-empty string as true (``nanny="no"`` keeps the nanny)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text in ("true", "false"):
        return text == "true"
    raise SpecError(name, value, "must be True or False")


def _seconds(name: str) -> Any:
    """Whole seconds from a number or a time (``"60s"``, ``"2min"``), as dask reads timeouts."""

    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise SpecError(name, value, "must be seconds, or a time such as 60s or 2min")
        try:
            from dask.utils import parse_timedelta

            seconds: float | None = parse_timedelta(value, default="seconds")
        except (TypeError, ValueError, KeyError):
            raise SpecError(name, value, "must be seconds, or a time such as 60s or 2min") from None
        if seconds is None or not math.isfinite(seconds) or seconds < 1:
            raise SpecError(name, value, "must be at least one second")
        return math.ceil(seconds)

    return parse


def _environment(value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, Iterable) and not isinstance(value, str):
        items = []
        for entry in value:
            if isinstance(entry, str):
                key, sep, val = entry.partition("=")
                if not sep:
                    raise SpecError("environment", entry, "write NAME=VALUE")
                # Only the NAME=VALUE text of a command line or config file: pairs are values
                # already (from Python, or read back from session.json) and stay as they are.
                items.append((key, _unquoted(val)))
            else:
                key, val = entry
                items.append((key, val))
    else:
        raise SpecError("environment", value, "a mapping or a list of NAME=VALUE")
    return tuple((str(k), str(v)) for k, v in items)


def _unquoted(value: str) -> str:
    """A value wrapped whole in one pair of quotes, as a shell would have read it: without them.

    ``--env 'X=$TMPDIR'`` reaches us as ``$TMPDIR``; the same line in a config file
    (``X='$TMPDIR'``) keeps its quotes, which the user meant as the shell's, not the value's.
    """
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" and value[0] not in value[1:-1]:
        return value[1:-1]
    return value


def absolute_path(value: Any) -> str:
    """A path as the user meant it where they typed it: ``~`` expanded, relative to the
    working directory of this process (jobs run elsewhere: the session's scripts folder)."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise SpecError("log_directory", value, "must be a non-empty path or left out")
    return os.path.abspath(os.path.expanduser(str(value)))


def make_log_directory(path: str) -> str:
    """Create a log directory the user gave (0700 where new), before any job writes to it.

    Batch systems do not create it (SLURM fails the job: JobLaunchFailure). Called
    where the user typed the command, so that a directory that cannot be made is
    refused in one line before anything is submitted.
    """
    path = absolute_path(path)
    try:
        private_directory(Path(path))  # its new parents 0700 too (os.makedirs gives them 0755)
    except OSError as exc:
        raise SpecError(
            "log_directory", path, f"cannot be made ({exc.strerror}); choose a directory you can write to"
        ) from None
    if not os.path.isdir(path):
        raise SpecError("log_directory", path, "is not a directory; choose a directory you can write to")
    if not os.access(path, os.W_OK | os.X_OK):
        raise SpecError("log_directory", path, "is not writable by you; choose a directory you can write to")
    return path


_PARSERS: dict[str, Any] = {
    "cores": _whole("cores"),
    "processes": _whole("processes"),
    "nodes": _whole("nodes"),
    "gpus": _whole("gpus"),
    "memory": parse_memory,
    "walltime": parse_walltime,
    "job_extra_directives": _lines("job_extra_directives", mapping_lines=True),
    "job_script_prologue": _lines("job_script_prologue"),
    "environment": _environment,
    "log_directory": absolute_path,
    "job_directives_skip": _lines("job_directives_skip"),
    "job_script_epilogue": _lines("job_script_epilogue"),
    "worker_extra_args": functools.partial(parse_arguments, "worker_extra_args"),
    "death_timeout": _seconds("death_timeout"),
    "nanny": functools.partial(parse_boolean, "nanny"),
    "local_directory": str,
    "python": str,
    "worker_command": str,
    "worker_class": str,
    "shebang": str,
}
