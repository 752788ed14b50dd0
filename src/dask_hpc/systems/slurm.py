"""SLURM: sbatch, squeue, scancel."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from dask_hpc import _process
from dask_hpc.errors import CommandError
from dask_hpc.spec import JobSpec, format_walltime
from dask_hpc.systems.base import BatchSystem, JobState, JobStatus, must_match, setting_line, setting_whole

__all__ = ["SlurmSystem", "expand_hostlist"]

# squeue's %T names; everything not listed here is reported as UNKNOWN.
STATES: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "PREEMPTED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
}

# One squeue call for all jobs; "|" ends every field so that empty ones survive.
QUERY_FIELDS = "JobID:|,State:|,Reason:|,NodeList:|,exit_code:|"


class SlurmSystem(BatchSystem):
    name = "slurm"
    list_jobs = "squeue --me"
    directive_prefix = "#SBATCH"
    bare_walltime = "m"
    job_id_variable = "SLURM_JOB_ID"
    job_name_forbidden = r"\n/"
    # sbatch's long and short spellings; --mem, --mem-per-cpu and --mem-per-gpu exclude each other.
    directive_keys: ClassVar[Mapping[str, str]] = {
        "job_name": r"^(--job-name(=|\s|$)|-J)",
        "nodes": r"^(--nodes(=|\s|$)|-N)",
        "tasks": r"^(--ntasks(=|\s|$)|-n)",
        "cores": r"^(--cpus-per-(task|gpu)(=|\s|$)|-c)",  # --cpus-per-gpu excludes --cpus-per-task
        "memory": r"^--mem(-per-cpu|-per-gpu)?(=|\s|$)",
        "walltime": r"^(--time(=|\s|$)|-t)",
        "queue": r"^(--partition(=|\s|$)|-p)",
        "account": r"^(--account(=|\s|$)|-A)",
        "output": r"^(--output(=|\s|$)|-o)",
        "error": r"^(--error(=|\s|$)|-e)",
    }
    cancel_gone_phrases = ("already completing or completed", "Invalid job id specified")
    # dask-jobqueue's SLURMCluster job_cpu and job_mem: what the job asks SLURM for, where it
    # differs from what its workers use (cores, memory).
    setting_keys: ClassVar[Mapping[str, str]] = {"job-cpu": "job_cpu", "job-mem": "job_mem"}

    def __init__(self, job_cpu: int | str | None = None, job_mem: str | None = None) -> None:
        #: --cpus-per-task, instead of the cores.
        self.job_cpu = None if job_cpu is None else setting_whole("job_cpu", job_cpu)
        #: --mem as sbatch reads it (``16G``; a bare number is MiB), instead of the memory.
        self.job_mem = None if job_mem is None else setting_line("job_mem", str(job_mem))

    def directives(self, spec: JobSpec) -> list[str]:
        d = [
            f"--job-name={self.quote(self.job_name(spec))}",
            "--nodes=1",
            "--ntasks=1",
            f"--cpus-per-task={self.job_cpu or spec.cores}",
            # SLURM's M is MiB; round up so that the worker's limit fits inside.
            f"--mem={self.job_mem or f'{math.ceil(spec.memory / 2**20)}M'}",
            f"--time={format_walltime(spec.walltime)}",
        ]
        if spec.queue:
            d.append(f"--partition={self.quote(spec.queue)}")
        if spec.account:
            d.append(f"--account={self.quote(spec.account)}")
        logs = self.log_directory(spec)
        if logs:
            d.append(f"--output={self.quote(logs + '/%x-%j.out')}")
            d.append(f"--error={self.quote(logs + '/%x-%j.err')}")
        return d

    def submit_argv(self, script: Path) -> list[str]:
        return ["sbatch", "--parsable", str(script)]

    def parse_job_id(self, stdout: str) -> str:
        # --parsable prints "ID" or "ID;cluster".
        return must_match(r"^\s*(\d+(?:_\d+)?)", stdout, "a SLURM job id")[1]

    def query_argv(self, job_ids: Sequence[str]) -> list[str]:
        return [
            "squeue",
            "--noheader",
            "--states=all",
            "--jobs",
            ",".join(job_ids),
            "-O",
            QUERY_FIELDS,
        ]

    def query_failure_means_unknown(self, stderr: str) -> bool:
        return "Invalid job id specified" in stderr

    def parse_query(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        found: dict[str, JobStatus] = {}
        for line in stdout.splitlines():
            fields = [f.strip() for f in line.split("|")]
            if len(fields) < 5 or not fields[0]:
                continue
            job_id, state_name, reason, nodes, raw_exit = fields[:5]
            state = STATES.get(state_name.split()[0] if state_name else "", JobState.UNKNOWN)
            found[job_id] = JobStatus(
                job_id,
                state,
                reason=None if reason in ("", "None", "(null)") else reason,
                node=next(iter(expand_hostlist(nodes)), None) if nodes and nodes != "(null)" else None,
                exit_code=_exit_code(raw_exit) if state.finished else None,
            )
        return {j: found.get(j, JobStatus(j, JobState.UNKNOWN)) for j in job_ids}

    def log_files(self, job_name: str, job_id: str) -> tuple[str, str]:
        return f"{job_name}-{job_id}.out", f"{job_name}-{job_id}.err"

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["scancel", *job_ids]

    def nodes_argv(self) -> list[str]:
        # NodeAddr (%o), by which SLURM itself reaches each node; one line a node.
        return ["sinfo", "--noheader", "--Node", "--format=%o"]

    def nodes_from_env(self, env: Mapping[str, str]) -> tuple[str, ...]:
        return expand_hostlist(env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", "")))

    def end_time(self, job_id: str, env: Mapping[str, str]) -> float | None:
        # SLURM knows the exact end (it moves if an admin extends the job).
        try:
            done = _process.run(["squeue", "--noheader", "--jobs", job_id, "-O", "EndTime:|"], timeout=10)
            return datetime.fromisoformat(done.stdout.strip().rstrip("|")).timestamp()
        except (CommandError, ValueError):
            return super().end_time(job_id, env)


def _exit_code(raw: str) -> int | None:
    """squeue's exit_code is a wait status: code << 8, or the signal number."""
    try:
        status = int(raw)
    except ValueError:
        return None
    signal = status & 0x7F
    return 128 + signal if signal else status >> 8


_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def expand_hostlist(hostlist: str) -> tuple[str, ...]:
    """``"node[1-3,07],gpu1"`` -> ``("node1", "node2", "node3", "node07", "gpu1")``."""
    hosts: list[str] = []
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", hostlist):
        hosts.extend(_expand_one(item.strip()))
    return tuple(h for h in dict.fromkeys(hosts) if h)


def _expand_one(item: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", item)
    if match is None:
        return [item]
    head, tail = item[: match.start()], item[match.end() :]
    names: list[str] = []
    for part in match[1].split(","):
        bounds = _RANGE.match(part.strip())
        if bounds is None:
            names.append(f"{head}{part}")
            continue
        lo, hi = bounds[1], bounds[2] or bounds[1]
        width = len(lo)
        names += [f"{head}{n:0{width}d}" for n in range(int(lo), int(hi) + 1)]
    return [full for name in names for full in _expand_one(name + tail)]
