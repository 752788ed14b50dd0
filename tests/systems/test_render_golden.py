"""Golden job scripts: every system, a handful of specs, quoting included.

A mismatch fails. To accept a deliberate change, regenerate with
``pytest tests/systems/test_render_golden.py --regen-golden`` and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dask_hpc import JobSpec
from dask_hpc.commands import scheduler_command, worker_command, worker_script
from dask_hpc.control import session_specs
from dask_hpc.errors import SpecError
from dask_hpc.security import tls_files
from dask_hpc.systems import SYSTEMS, get_system

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
PYTHON = "/opt/conda/envs/analysis/bin/python"
SCHEDULER_FILE = "/home/alice/.dask-hpc/sessions/default/scheduler.json"

# Extra directives are the system's own syntax, so they differ per system.
EXTRA = {
    "slurm": ["--constraint=haswell", "--exclusive"],
    "pbs": ["-l place=excl", "-m n"],
    "torque": ["-l naccesspolicy=singlejob"],
    "sge": ["-l exclusive=true"],
    "lsf": ['-R "select[mem>10000]"'],
    "htcondor": ['requirements = (OpSysAndVer == "CentOS7")'],
    "local": [],
}

CASES = {
    "default": {},
    "full": {
        "cores": 8,
        "processes": 2,
        "memory": "16GB",
        "walltime": "1h30m",
        "queue": "regular",
        "account": "ABC123",
        "log_directory": "/scratch/alice/logs",
        "job_script_prologue": ["module load python/3.11", "source activate analysis"],
        "environment": {"OMP_NUM_THREADS": "1"},
    },
    "quoting": {
        "job_name": 'it\'s "my" job',
        "walltime": "2-00:00:00",
        "memory": "1.5TB",
        "log_directory": "/scratch/my logs/it's here",
        "environment": {"GREETING": "hello world; $(rm -rf /)", "EMPTY": ""},
    },
}


# A session's two kinds of job: the scheduler's (with the keeper), and a worker's.
STATE_DIR = Path("/home/alice/.dask-hpc/sessions/climate")
SESSION_OPTIONS = {"queue": "regular", "account": "ABC123", "walltime": "30m", "cores": 4}
SESSION_CASES = ("session-scheduler", "session-worker")


def render_session(system: str, case: str) -> str:
    options = dict(SESSION_OPTIONS)
    if system == "htcondor":
        options.pop("queue")
    try:
        worker, scheduler = session_specs(
            "climate", options, scheduler_walltime="4h", logs=STATE_DIR / "logs"
        )
        batch = get_system(system)
        if case == "session-scheduler":
            return batch.render(scheduler, scheduler_command(STATE_DIR, python=PYTHON))
        return worker_script(
            batch,
            worker,
            STATE_DIR / "scheduler.json",
            python=PYTHON,
            interface="ib0",
            tls=tls_files(STATE_DIR),
        )
    except SpecError as exc:
        return f"SpecError: {exc}\n"


def render(system: str, case: str) -> str:
    if case in SESSION_CASES:
        return render_session(system, case)
    options = dict(CASES[case])
    if case == "full":
        options["job_extra_directives"] = EXTRA[system]
        if system == "htcondor":
            options.pop("queue")  # HTCondor has no queues: see test below
    spec = JobSpec.from_options(options)
    command = worker_command(spec, SCHEDULER_FILE, python=PYTHON)
    try:
        return get_system(system).render(spec, command)
    except SpecError as exc:  # a spec this system cannot express: the error is the golden text
        return f"SpecError: {exc}\n"


@pytest.mark.parametrize("case", [*sorted(CASES), *SESSION_CASES])
@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_golden(system: str, case: str, request: pytest.FixtureRequest) -> None:
    path = GOLDEN / f"{system}-{case}.txt"
    text = render(system, case)
    if request.config.getoption("--regen-golden"):
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}; run pytest with --regen-golden and review it"
    assert text == path.read_text(), f"{path.name} differs; if intended, --regen-golden and review"


def test_every_system_has_golden_files() -> None:
    names = {p.name for p in GOLDEN.glob("*.txt")}
    expected = {f"{s}-{c}.txt" for s in SYSTEMS for c in [*CASES, *SESSION_CASES]}
    assert names == expected


def test_htcondor_refuses_a_queue() -> None:
    spec = JobSpec.from_options(queue="regular")
    with pytest.raises(SpecError, match="HTCondor has no queues"):
        get_system("htcondor").render(spec, ["true"])


@pytest.mark.parametrize("system", sorted(set(SYSTEMS) - {"htcondor"}))
def test_scripts_are_valid_bash(system: str, tmp_path: Path) -> None:
    import subprocess

    for case in [*CASES, *SESSION_CASES]:
        script = tmp_path / f"{case}.sh"
        text = render(system, case)
        if text.startswith("SpecError"):
            continue
        script.write_text(text)
        check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_environment_values_cannot_run_commands(tmp_path: Path) -> None:
    """The rendered body exports values literally: no command substitution."""
    import subprocess

    spec = JobSpec.from_options(CASES["quoting"])
    script = get_system("local").render(spec, ["bash", "-c", 'printf "%s|%s" "$GREETING" "$EMPTY"'])
    path = tmp_path / "job.sh"
    path.write_text(script)
    out = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=30)
    assert out.stdout == "hello world; $(rm -rf /)|"
