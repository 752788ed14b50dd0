"""Job scripts read as each batch system reads them, into what they ask for: {meaning: value}.

Used to compare dask-hpc's scripts with dask-jobqueue's by meaning, not by text: ``-J x``
and ``--job-name=x`` are one request; ``--mem=15G`` and ``--mem=15360M`` ask for the
same bytes. The rules are the batch systems' manuals' (sbatch(1), qsub(1B) of PBS Pro,
qsub(1) and complex(5) of Grid Engine, bsub of LSF, condor_submit(1)), for the forms the
two projects write.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from typing import Any

__all__ = ["read_script", "read_worker"]

_1024 = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}


def _size(text: str, bare: str, *, decimal_lower: bool = False) -> int:
    """Bytes from a batch system's size: a number and a unit (K, M, G, T; KB, MB, ... all
    1024s), a bare number in ``bare``'s unit. Grid Engine's lower-case k, m, g are 1000s."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtpb]?)(i?b)?", text.strip(), re.IGNORECASE)
    assert match, f"not a size: {text!r}"
    number, unit = float(match[1]), match[2] or bare
    if decimal_lower and unit in "kmg" and unit:
        return math.ceil(number * 1000 ** ("kmg".index(unit) + 1))
    return math.ceil(number * _1024[unit.lower()])


def _clock(text: str, *, two_fields: str = "MM:SS", bare: str = "s") -> int:
    """Seconds from [D-]HH:MM:SS forms; two fields and a bare number as the system reads them."""
    text = text.strip()
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
        parts = [int(p) for p in text.split(":")] + [0, 0]
        return days * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 3:
        return parts[0] * 3600 + parts[1] * 60 + parts[2]
    if len(parts) == 2:
        return parts[0] * 3600 + parts[1] * 60 if two_fields == "HH:MM" else parts[0] * 60 + parts[1]
    return parts[0] * (60 if bare == "m" else 1)


def _directives(script: str, prefix: str) -> list[list[str]]:
    out = []
    for line in script.splitlines():
        if line.startswith(prefix + " "):
            out.append(shlex.split(line[len(prefix) :]))
    return out


def _options(tokens: list[str], short: dict[str, str]) -> list[tuple[str, str | None]]:
    """(long name, value) pairs from one directive's tokens (``-J x``, ``--job-name=x``)."""
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--"):
            name, sep, value = token[2:].partition("=")
            pairs.append((name, value if sep else None))
        elif token in short:
            pairs.append((short[token], tokens[i + 1] if i + 1 < len(tokens) else None))
            i += 1
        else:
            pairs.append((token.lstrip("-"), tokens[i + 1] if i + 1 < len(tokens) else None))
            i += 1
        i += 1
    return pairs


def _log_dir(path: str) -> str:
    """Where a log file goes: its directory (a path ending in / is one)."""
    return os.path.normpath(path if path.endswith("/") else os.path.dirname(path))


def read_slurm(script: str) -> dict[str, Any]:
    short = {"-J": "job-name", "-n": "ntasks", "-c": "cpus-per-task", "-t": "time", "-p": "partition"}
    short |= {"-A": "account", "-e": "error", "-o": "output", "-N": "nodes"}
    out: dict[str, Any] = {}
    for tokens in _directives(script, "#SBATCH"):
        for name, value in _options(tokens, short):
            if name == "mem":
                out[name] = _size(value or "", "m")
            elif name == "time":
                out[name] = _clock(value or "", bare="m")
            elif name in ("error", "output"):
                out[name] = _log_dir(value or "")
            elif name in ("ntasks", "cpus-per-task", "nodes"):
                out[name] = int(value or 0)
            else:
                out[name] = True if value is None else value
    return out


def read_pbs(script: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tokens in _directives(script, "#PBS"):
        flag, value = tokens[0], " ".join(tokens[1:])
        if flag == "-l":
            # a,b: several resources; select=1:ncpus=2: one chunk's (walltime's colons are its own)
            parts = value.split(",")
            parts = [
                p for part in parts for p in ([part] if part.startswith("walltime=") else part.split(":"))
            ]
            for part in parts:
                key, _, val = part.partition("=")
                if key == "mem":
                    out["mem"] = _size(val, "b")
                elif key == "walltime":
                    out["walltime"] = _clock(val)
                else:
                    out[key] = int(val) if val.isdigit() else val
        elif flag in ("-o", "-e"):
            out[flag] = _log_dir(value)
        else:
            out[flag] = value
    return out


def read_sge(script: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tokens in _directives(script, "#$"):
        flag, value = tokens[0], " ".join(tokens[1:])
        if flag == "-l":
            for part in value.split(","):
                key, _, val = part.partition("=")
                if key in ("h_rt", "s_rt"):
                    out[key] = _clock(val)
                elif re.fullmatch(r"\d+(\.\d+)?[kmgKMG]?", val):
                    out[key] = _size(val, "b", decimal_lower=True)
                else:
                    out[key] = val
        elif flag in ("-o", "-e"):
            out[flag] = _log_dir(value)
        else:
            out[flag] = value or True
    return out


def read_lsf(script: str, bare_memory: str = "k") -> dict[str, Any]:
    """``bare_memory``: LSF_UNIT_FOR_LIMITS, the unit of a bare -M (KB unless a site sets it)."""
    out: dict[str, Any] = {}
    for tokens in _directives(script, "#BSUB"):
        flag, value = tokens[0], " ".join(tokens[1:])
        if flag == "-M":
            out[flag] = _size(value, bare_memory)
        elif flag == "-W":
            out[flag] = _clock(value, two_fields="HH:MM", bare="m")
        elif flag == "-n":
            out[flag] = int(value)
        elif flag == "-R":
            out.setdefault("-R", []).append(value)
        elif flag in ("-o", "-e"):
            out[flag] = _log_dir(value)
        else:
            out[flag] = value
    return out


def read_htcondor(script: str) -> dict[str, Any]:
    """A submit description's commands, by name as condor_submit reads them (case and ``_``
    do not matter: RequestCpus is request_cpus), with dask-jobqueue's MY.* and floor()
    expressions evaluated; request_memory in MiB, request_disk in KiB."""
    raw: dict[str, str] = {}
    script = script.replace("$(DOLLAR)", "$")  # condor_submit's macro for a literal $
    for line in script.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#") and not line.lower().startswith("queue"):
            raw[key.strip()] = value.strip()
    my = {k[3:].lower(): v for k, v in raw.items() if k.upper().startswith("MY.")}

    def value_of(text: str) -> Any:
        floor = re.fullmatch(r"floor\(MY\.(\w+) / (\d+)\)", text)
        if floor:
            return int(my[floor[1].lower()]) // int(floor[2])
        if text.startswith("MY."):
            return value_of(my[text[3:].lower()])
        unit = re.fullmatch(r"(\d+)\s*(MB|GB)?", text)
        if unit:
            return int(unit[1]) * (1024 if unit[2] == "GB" else 1)
        return text

    out = {}
    for key, value in raw.items():
        if key.upper().startswith("MY."):
            continue
        name = key.replace("_", "").lower()
        out[name] = value_of(value)
    return out


def read_moab(script: str) -> dict[str, Any]:
    """msub reads #PBS lines as Torque's qsub does, and takes PBS Pro's select form too: one
    chunk of ncpus is one node of that many processors (ppn)."""
    out = read_pbs(script)
    renamed = {"select": "nodes", "ncpus": "ppn"}
    return {renamed.get(k, k): v for k, v in out.items()}


def read_oar(script: str) -> dict[str, Any]:
    """#OAR lines as oarsub -S reads them (OAR::Sub::scan_script): the rest of the line is the
    value, word for word; -l is resources and walltime (hour[:min[:sec]]); the last -p
    counts, read here as its set of AND-ed conditions (quotes and brackets round them aside)."""
    out: dict[str, Any] = {}
    for line in script.splitlines():
        if not line.startswith("#OAR "):
            continue
        flag, _, value = line[len("#OAR ") :].strip().partition(" ")
        value = value.strip()
        if flag in ("-l", "--resource"):
            assert "-l" not in out, f"a second -l is another choice of resources: {line}"
            resources, _, walltime = value.partition(",walltime=")
            out["-l"] = {k: int(v) for k, v in (part.split("=") for part in resources.split("/") if part)}
            out["walltime"] = (
                _clock(walltime, two_fields="HH:MM") if ":" in walltime else int(walltime) * 3600
            )
        elif flag in ("-p", "--property"):
            value = value[1:-1] if value[:1] == value[-1:] == "'" else value
            out["-p"] = {part.strip().strip("()").strip() for part in value.split(" AND ")}
        elif flag in ("-t", "--type"):
            out.setdefault("-t", []).append(value)
        elif flag in ("-O", "-E"):
            out[flag] = _log_dir(value)
        else:
            out[flag] = value
    return out


READERS = {
    "slurm": read_slurm,
    "pbs": read_pbs,
    "moab": read_moab,
    "sge": read_sge,
    "lsf": read_lsf,
    "htcondor": read_htcondor,
    "oar": read_oar,
}


def read_script(system: str, script: str, *, lsf_units: str = "kb") -> dict[str, Any]:
    """``lsf_units``: the site's LSF_UNIT_FOR_LIMITS, by which LSF reads a bare -M."""
    if system == "lsf":
        return read_lsf(script, bare_memory=lsf_units[0])
    return READERS[system](script)


_WORKER = re.compile(
    r"""([^\s'"]+) -m (distributed\.cli\.dask_worker|dask_hpc\.worker|[\w.]+worker)\b([^;']*)"""
)


def read_worker(script: str) -> dict[str, Any]:
    """What ``dask worker`` was asked: threads, processes, memory per process (bytes), and
    every other option by name (dask-jobqueue's ``--nanny``, the default, is left out)."""
    from dask.utils import parse_bytes

    script = script.replace("''", "'").replace('""', '"').replace("$(DOLLAR)", "$")
    match = _WORKER.search(script)
    assert match, f"no worker command in:\n{script}"
    tokens = shlex.split(match[3])
    out: dict[str, Any] = {"python": match[1], "nworkers": 1}
    skip = {"--scheduler-file", "--name", "--tls-ca-file", "--tls-cert", "--tls-key"}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        takes_value = i + 1 < len(tokens) and not tokens[i + 1].startswith("--")
        if not token.startswith("--"):  # dask-jobqueue's scheduler address
            i += 1
            continue
        value = tokens[i + 1] if takes_value else None
        i += 2 if takes_value else 1
        if token in skip or token in ("--nanny", "--no-dashboard"):
            continue
        name = token[2:]
        if name == "memory-limit":
            out[name] = parse_bytes(value or "")
        elif name == "protocol":  # distributed reads "tcp://" as "tcp" (address_from_user_args)
            out[name] = (value or "").rpartition("://")[0] or value
        elif name in ("nthreads", "nworkers", "death-timeout"):
            out[name] = int(float(value or 0))
        else:
            out[name] = True if value is None else value
    return out
