"""dask-jobqueue 0.9.0's keywords, given to our class of the same name, ask the batch system for
what dask-jobqueue's class asks: both job scripts are read as the batch system reads them
(tests/jobqueue/read_scripts.py) and compared by meaning, keyword by keyword, with the
examples of dask-jobqueue's documentation among them.

dask-jobqueue's scripts come from its own Job classes (installed by the test extra, pinned to
0.9.0); ours from ``cluster.job_script()`` of a cluster whose scheduler runs here, on
loopback. What we ask for beyond dask-jobqueue is ours to add (a log directory by default,
``--nodes=1``); what dask-jobqueue asks for that we do not is listed in THEIRS_ONLY, each
with why, and said in docs/jobqueue.md.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import dask_jobqueue
import pytest

from .read_scripts import read_script, read_worker

assert dask_jobqueue.__version__.startswith("0.9.0"), dask_jobqueue.__version__

#: What dask-jobqueue asks for that we do not, and why (docs/jobqueue.md says the same).
THEIRS_ONLY = {
    # Grid Engine: -cwd runs the job in the submit directory (ours: the session's scripts
    # folder, where nothing is read); -j y merges stderr into stdout (ours keeps them apart).
    "sge": {"-cwd", "-j"},
    # HTCondor: its executable is /bin/sh running the same command (ours: /bin/bash);
    # batch_name is the worker's name there (ours: job_name, as the other systems name jobs);
    # Stream_Output/Stream_Error and LogDirectory belong to its log file layout.
    "htcondor": {"executable", "arguments", "batchname", "streamoutput", "streamerror", "logdirectory"},
}
#: Sizes each project rounds up in its own unit: the same request within this much.
ROUNDING = {"requestmemory": 1, "requestdisk": 1}
#: Memory in bytes: ours must ask for at least the memory and no more than dask-jobqueue's,
#: which rounds up to whole GiB (SLURM, PBS).
AT_LEAST_THE_MEMORY = ("mem", "mem_free")
#: What we ask for that dask-jobqueue does not, and why (nothing else may appear).
OURS_ONLY = {
    "slurm": {"nodes", "output", "error"},  # one node; logs kept by default
    "pbs": {"-o", "-e"},
    "sge": {"-S", "mem_free", "-o", "-e"},  # bash; memory per slot (docs/jobqueue.md)
    "lsf": {"-o", "-e", "-R"},  # rusage[mem] beside -M; span[hosts=1] for one core too
    "moab": {"-o", "-e"},
    "oar": {"-O", "-E"},
    # how the job runs the worker (our submit description), the walltime, the logs
    "htcondor": {"universe", "environment", "getenv", "periodicremove", "periodicremovereason"}
    | {"output", "error", "log"},
}

JOB_CLASSES = {
    "slurm": ("SLURMCluster", "dask_jobqueue.slurm", "SLURMJob"),
    "pbs": ("PBSCluster", "dask_jobqueue.pbs", "PBSJob"),
    "sge": ("SGECluster", "dask_jobqueue.sge", "SGEJob"),
    "lsf": ("LSFCluster", "dask_jobqueue.lsf", "LSFJob"),
    "htcondor": ("HTCondorCluster", "dask_jobqueue.htcondor", "HTCondorJob"),
    "oar": ("OARCluster", "dask_jobqueue.oar", "OARJob"),
    "moab": ("MoabCluster", "dask_jobqueue.moab", "MoabJob"),
}

ALL = ("slurm", "pbs", "sge", "lsf", "htcondor", "oar", "moab")
BATCH = ("slurm", "pbs", "sge", "lsf", "oar", "moab")  # the systems whose jobs are scripts with directives

# (systems, keywords): each keyword alone beside cores and memory, then the docs' examples.
CASES: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (ALL, {}),
    (ALL, {"cores": 36, "memory": "100GB"}),  # processes near sqrt(cores): 6 x 6, as theirs
    (ALL, {"cores": 8, "processes": 2, "memory": "16GB"}),
    (BATCH, {"walltime": "02:00:00"}),
    (BATCH, {"queue": "regular"}),
    (("slurm", "pbs", "moab"), {"account": "abc123"}),
    (("sge", "lsf", "oar"), {"project": "abc123"}),
    (ALL, {"job_name": "my-workers"}),
    (BATCH, {"log_directory": "logs"}),
    (BATCH, {"job_script_prologue": ["module load python/3.11", "source activate dask"]}),
    # dask-jobqueue's deprecated names (each with its FutureWarning: test_deprecated_names)
    (("slurm",), {"env_extra": ["module load python/3.11"]}),
    (("slurm",), {"job_extra": ["--exclusive"]}),
    (("slurm",), {"extra": ["--lifetime", "55m"]}),
    (("slurm",), {"header_skip": ["--mem"]}),
    (("slurm", "pbs"), {"project": "abc123"}),
    (("slurm",), {"job_extra_directives": ["--exclusive", "--constraint=haswell"]}),
    (("pbs",), {"job_extra_directives": ["-m abe", "-l place=excl"]}),
    (("sge",), {"job_extra_directives": ["-pe smp 4", "-l exclusive=true"]}),
    (("lsf",), {"job_extra_directives": ["-x", '-R "select[mem>4000]"']}),
    (
        ("htcondor",),
        {"job_extra_directives": {"+ProjectName": '"myproject"', "requirements": "Arch == X86_64"}},
    ),
    (("slurm",), {"job_directives_skip": ["--mem"]}),
    (("pbs",), {"job_directives_skip": ["select="]}),
    (("htcondor",), {"job_directives_skip": ["RequestMemory"]}),
    (ALL, {"worker_extra_args": ["--resources", "GPU=1", "--lifetime", "55m", "--lifetime-stagger", "4m"]}),
    (ALL, {"local_directory": "$TMPDIR"}),
    (ALL, {"death_timeout": 120}),
    (ALL, {"nanny": False, "processes": 1}),
    (ALL, {"python": "/opt/conda/bin/python"}),
    (ALL, {"protocol": "tcp://"}),
    (("slurm",), {"job_cpu": 16}),
    (("slurm",), {"job_mem": "20G"}),
    (("pbs",), {"resource_spec": "select=1:ncpus=24:mem=100GB:model=bro"}),
    (("sge",), {"resource_spec": "h_vmem=20G,mem_req=20G"}),
    (("lsf",), {"ncpus": 4}),
    (("lsf",), {"mem": 12 * 10**9, "lsf_units": "mb"}),
    (("lsf",), {"walltime": "01:30"}),  # bsub -W: 1 h 30 min
    (("htcondor",), {"disk": "5GB"}),
    (("oar",), {"memory_per_core_property_name": "memcore"}),
    (("oar",), {"memory_per_core_property_name": "memcore", "job_extra_directives": ["-p cluster='dahu'"]}),
    (("oar",), {"memory_per_core_property_name": "not_applicable"}),
    (("oar",), {"resource_spec": "/nodes=2/core=8"}),
    (("oar",), {"walltime": "2"}),  # oarsub: hours
    (("oar",), {"job_extra_directives": ["-t besteffort", "-t idempotent"]}),
    (("moab",), {"resource_spec": "nodes=1:ppn=16,mem=32gb"}),
    # dask-jobqueue's documentation's examples (docs/source/examples.rst, index.rst)
    (
        ("pbs",),
        {"cores": 36, "memory": "100GB", "account": "P48500028", "queue": "premium", "walltime": "02:00:00"},
    ),
    (
        ("slurm",),
        {
            "cores": 8,
            "processes": 4,
            "memory": "16GB",
            "account": "woodshole",
            "walltime": "01:00:00",
            "queue": "normal",
        },
    ),
    (("sge",), {"queue": "default.q", "walltime": "1500000", "processes": 10, "cores": 10, "memory": "20GB"}),
    (("lsf",), {"queue": "general", "project": "cpp", "walltime": "00:30", "cores": 15, "memory": "25GB"}),
    (("htcondor",), {"cores": 1, "memory": "2GB", "disk": "1GB"}),
    (("oar",), {"queue": "default", "walltime": "01:00:00", "cores": 16, "memory": "64GB"}),
]
DEFAULTS = {"cores": 4, "memory": "8GB", "disk": "1GB"}


def params() -> list[Any]:
    out = []
    for systems, keywords in CASES:
        for system in systems:
            label = ",".join(keywords) or "defaults"
            out.append(pytest.param(system, keywords, id=f"{system}-{label}"))
    return out


def theirs(system: str, keywords: dict[str, Any], tmp: Path) -> str:
    import importlib

    _, module, name = JOB_CLASSES[system]
    job_class = getattr(importlib.import_module(module), name)
    given = {**DEFAULTS, **keywords}
    if system != "htcondor":
        given.pop("disk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)  # OAR's memory property (tested in test_dropin)
        job = job_class(scheduler="tcp://127.0.0.1:8786", name="dummy-name", interface="lo", **given)
    return str(job.job_script())


def ours(system: str, keywords: dict[str, Any], tmp: Path) -> str:
    import dask_hpc

    given = {**DEFAULTS, **keywords}
    if system != "htcondor":
        given.pop("disk")
    cls = getattr(dask_hpc, JOB_CLASSES[system][0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        cluster = cls(interface="lo", shared_temp_directory=str(tmp / "sessions"), **given)
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()


def same(key: str, mine: Any, their: Any, memory: int = 0) -> bool:
    if key == "-M":
        # dask-jobqueue divides by 1000s and LSF multiplies by 1024s: it asks for more than
        # the memory (2.4% at KB, 4.9% at MB). Ours is the memory, in LSF's own unit.
        return bool(mine <= their <= mine * 1.024**3)
    if key in AT_LEAST_THE_MEMORY and isinstance(mine, int) and isinstance(their, int):
        return bool(min(memory, their) <= mine <= their)
    if key in ROUNDING and isinstance(mine, int) and isinstance(their, int):
        return abs(mine - their) <= ROUNDING[key]
    if key == "-p" and isinstance(mine, set) and isinstance(their, set):
        # OAR's memory property per core: dask-jobqueue and ours round MiB up alike.
        return bool(mine == their)
    if key == "-R":  # LSF's resource strings: theirs among ours
        return set(their) <= set(mine)
    return bool(mine == their)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("system", "keywords"), params())
def test_our_class_asks_for_what_dask_jobqueues_asks_for(
    system: str, keywords: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "log_directory" in keywords:
        keywords = {**keywords, "log_directory": str(tmp_path / "logs")}
    their_script, our_script = theirs(system, keywords, tmp_path), ours(system, keywords, tmp_path)
    units = keywords.get("lsf_units", "kb")  # the site's LSF_UNIT_FOR_LIMITS, which dask-jobqueue assumes
    their_job, our_job = read_script(system, their_script, lsf_units=units), read_script(system, our_script)
    from dask.utils import parse_bytes

    memory = parse_bytes({**DEFAULTS, **keywords}["memory"])
    added = set(our_job) - set(their_job) - OURS_ONLY[system]
    assert not added, f"ours asks for {added} too:\n{our_script}\n--- dask-jobqueue's:\n{their_script}"
    differ = {
        key: (our_job.get(key), value)
        for key, value in their_job.items()
        if key not in THEIRS_ONLY.get(system, ()) and not same(key, our_job.get(key), value, memory)
    }
    assert not differ, f"(ours, dask-jobqueue's) differ:\n{our_script}\n--- dask-jobqueue's:\n{their_script}"
    their_worker, our_worker = read_worker(their_script), read_worker(our_script)
    differ = {
        k: (our_worker.get(k), v) for k, v in their_worker.items() if not same_worker(k, our_worker.get(k), v)
    }
    assert not differ, f"(ours, dask-jobqueue's) worker options differ:\n{our_script}\n---\n{their_script}"
    if "job_script_prologue" in keywords:
        for line in keywords["job_script_prologue"]:
            assert line in our_script


def same_worker(key: str, mine: Any, their: Any) -> bool:
    if key == "memory-limit":  # dask-jobqueue writes it rounded: 3.73GiB
        return abs(mine - their) <= 0.01 * their
    return bool(mine == their)


def test_the_prologue_epilogue_and_shebang_are_where_dask_jobqueue_puts_them(tmp_path: Path) -> None:
    """Prologue lines before the worker, epilogue lines after it, the shebang first."""
    lines = ["module load python", "source activate dask"]
    script = ours(
        "slurm",
        {"job_script_prologue": lines, "job_script_epilogue": ["echo done"], "shebang": "#!/bin/bash -l"},
        tmp_path,
    )
    their = theirs("slurm", {"job_script_prologue": lines, "shebang": "#!/bin/bash -l"}, tmp_path)
    for script_ in (script, their):
        first, *rest = script_.splitlines()
        assert first == "#!/bin/bash -l"
        worker = next(i for i, line in enumerate(rest) if " -m " in line and "worker" in line)
        assert [rest.index(line) < worker for line in lines] == [True, True]
    ours_lines = script.splitlines()
    worker = next(i for i, line in enumerate(ours_lines) if " -m dask_hpc.worker" in line)
    assert ours_lines.index("echo done") > worker
