"""The dask-hpc command as users run it: a real subprocess, exit codes and stderr."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

DASK_HPC = [sys.executable, "-m", "dask_hpc"]


def run(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DASK_HPC, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_script_prints_a_correct_sbatch_script() -> None:
    out = run(
        "script",
        "--system",
        "slurm",
        "--cores",
        "4",
        "--memory",
        "8GB",
        "--walltime",
        "90m",
        "--queue",
        "debug",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    for directive in ("--cpus-per-task=4", "--mem=7630M", "--time=01:30:00", "--partition=debug"):
        assert f"#SBATCH {directive}" in lines
    assert "-m dask_hpc.worker --scheduler-file" in lines[-1]
    assert "--nthreads 4" in lines[-1]


def test_the_workers_options_of_dask_jobqueue_as_flags() -> None:
    """--local-directory (the node's $TMPDIR), --worker-extra-args, --epilogue, --shebang."""
    out = run(
        "script",
        "--system",
        "slurm",
        "--local-directory",
        "$TMPDIR",
        "--worker-extra-args",
        "--resources GPU=1 --lifetime 55m",
        "--epilogue",
        "echo bye",
        "--shebang",
        "#!/bin/bash -l",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "#!/bin/bash -l" and lines[-1] == "echo bye"
    worker = next(line for line in lines if " -m dask_hpc.worker " in line)
    assert worker.endswith('--local-directory "$TMPDIR" --resources GPU=1 --lifetime 55m')


def test_script_is_accepted_by_real_sbatch(slurm_up: None, tmp_path: Path) -> None:
    """sbatch --test-only parses the script and schedules it without running it."""
    out = run(
        "script",
        "--system",
        "slurm",
        "--cores",
        "2",
        "--memory",
        "1GB",
        "--walltime",
        "10m",
        "--queue",
        "debug",
        "--job-name",
        "it's a test",
        "--log-directory",
        str(tmp_path / "a b"),
    )
    script = tmp_path / "job.sh"
    script.write_text(out.stdout)
    check = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    assert "to start at" in check.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["script", "--walltime", "banana"], "error: invalid walltime 'banana': use HH:MM:SS"),
        (["script", "--memory", "lots"], "error: invalid memory 'lots'"),
        (["script", "--cores", "0"], "error: invalid cores 0"),
        (
            ["script", "--system", "loadleveler"],
            "error: unknown system 'loadleveler'; known systems: htcondor, local, lsf, moab, oar",
        ),
        (
            ["script", "--banana", "1"],
            "error: no such option --banana; known options: --account, --cores",
        ),
        (["up", "--wallclock", "1h"], "error: no such option --wallclock (did you mean --walltime?); known"),
        (["script", "--system", "htcondor", "--queue", "q"], "HTCondor has no queues"),
        (
            ["script", "--system", "sge", "--log-directory", "/tmp/it's"],
            "sge cannot take ' in a path",
        ),
        (["script", "--job-name", "runs/1"], "error: invalid job_name 'runs/1': cannot contain '/'"),
        (["script", "--system", "pbs", "--job-name", "my run"], "pbs cannot take a space in a job name"),
        (["script", "--env", "1X=2"], "error: invalid environment '1X': a name is letters, digits and _"),
        (["add", "0"], "error: Invalid value for 'N': 0 is not in the range 1<=x<=10000; see dask-hpc add"),
        (["adapt", "--min", "3", "--max", "1"], "error: --max 1 is below --min 3; see dask-hpc adapt --help"),
        (["forget", "old"], "(old) (a session's name goes after --name: --name NAME); see dask-hpc forget"),
        (["script", "--job-extra-directive=--time=60"], "local takes only these directives"),
        (
            ["up", "--walltime", "10m", "--scheduler-walltime", "1m"],
            "error: invalid scheduler walltime '00:01:00': shorter than the workers' 00:10:00",
        ),
    ],
)
def test_bad_input_is_one_clear_line_and_nonzero(args: list[str], message: str) -> None:
    out = run(*args)
    assert out.returncode != 0
    assert out.stdout == ""
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_log_directory_that_cannot_be_made_is_refused_before_submitting(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    out = run(
        "up",
        "--name",
        "nolog",
        "--log-directory",
        "/proc/dask-hpc-logs",
        env={"DASK_HPC_SESSIONS": str(tmp_path / "sessions"), "DASK_HPC_LOCAL_SPOOL": str(spool)},
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: invalid log_directory '/proc/dask-hpc-logs': cannot be made (No such file or directory); "
        "choose a directory you can write to"
    ]
    assert not spool.exists()  # no job was submitted


def test_values_mean_what_they_mean_where_typed(tmp_path: Path) -> None:
    """A relative log directory is the user's working directory's; a $VAR in --env is the
    job's, on its node; a user's directive replaces the one of ours that sets the same."""
    done = subprocess.run(
        [
            *DASK_HPC,
            "script",
            "--system",
            "slurm",
            "--memory",
            "4GB",
            "--log-directory",
            "dask-logs/run1",
            "--env",
            "DASK_TEMPORARY_DIRECTORY=$TMPDIR",
            "--env",
            "GREETING='hello'",
            "--job-extra-directive=--mem-per-gpu=4G",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"#SBATCH --output={tmp_path}/dask-logs/run1/%x-%j.out" in lines
    assert 'export DASK_TEMPORARY_DIRECTORY="$TMPDIR"' in lines
    assert "export GREETING=hello" in lines
    assert "#SBATCH --mem-per-gpu=4G" in lines
    assert not any(line.startswith("#SBATCH --mem=") for line in lines)


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("dask-hpc, version ")


def test_dask_hpc_through_dasks_own_cli() -> None:
    """``dask hpc ...`` (dask's CLI finds us by its "dask_cli" entry point) is the same CLI,
    with the same one-line errors."""
    dask = Path(sys.executable).parent / "dask"
    done = subprocess.run([str(dask), "hpc", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("dask-hpc, version "), done.stderr
    done = subprocess.run([str(dask), "hpc", "--help"], capture_output=True, text=True, timeout=60)
    assert "Usage: dask hpc" in done.stdout and "adapt" in done.stdout
    done = subprocess.run(
        [str(dask), "hpc", "script", "--system", "nonesuch"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: unknown system 'nonesuch'; known systems: "
        "htcondor, local, lsf, moab, oar, pbs, sge, slurm, torque"
    ]


def test_the_package_says_it_is_typed_and_licensed() -> None:
    from importlib.metadata import metadata

    import dask_hpc

    assert (Path(dask_hpc.__file__).parent / "py.typed").is_file()
    meta = metadata("dask-hpc")
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert "Typing :: Typed" in meta.get_all("Classifier")


def test_no_command_wraps_its_lines_at_80_columns_in_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output to a pipe or a log file is 160 columns wide, not rich's 80 (paths and job
    lines were cut in the middle): the demo's steps as the session commands."""
    import io

    from dask_hpc.cli.console import WIDTH_WHEN_PIPED, make_console
    from dask_hpc.cli.demo_view import RichSteps

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a pipe, however pytest was started
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert RichSteps().console.width == make_console().width == WIDTH_WHEN_PIPED


def test_session_is_another_spelling_of_name_in_the_session_commands(tmp_path: Path) -> None:
    """``demo --session NAME`` names a session; so does ``status --session NAME``, as --name."""
    env = {**os.environ, "DASK_HPC_SESSIONS": str(tmp_path)}
    for flag in ("--name", "--session"):
        done = subprocess.run(
            [sys.executable, "-m", "dask_hpc", "status", flag, "nosuch"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode != 0 and "nosuch" in done.stderr and "no such option" not in done.stderr


def test_script_says_on_stderr_what_up_would_say() -> None:
    """A directive of the user's that replaces ours, and OAR without a memory property: said
    beside the script (on stderr), not only by up."""
    out = run("script", "--system", "slurm", "--job-extra-directive=--mem=4G")
    assert out.returncode == 0, out.stderr
    assert "your directives replace dask-hpc's --mem=" in out.stderr and "--mem=4G" in out.stdout
    oar = run("script", "--system", "oar", "--memory", "8GB")
    assert oar.returncode == 0 and "OAR is not asked for the memory" in oar.stderr
    assert oar.stdout.startswith("#!") and "OAR is not asked" not in oar.stdout


def test_forget_removes_only_ended_sessions_with_nothing_in_the_queue(tmp_path: Path) -> None:
    """forget removes an ended session's directory; a session not ended, one whose job is still
    in the queue (a real local job), or one unknown is refused in one line, nothing removed."""
    from dask_hpc.spec import JobSpec
    from dask_hpc.state.session import Session, SessionConfig
    from dask_hpc.systems import JobState
    from dask_hpc.systems.local import LocalSystem

    root, spool = tmp_path / "sessions", tmp_path / "spool"
    env = {"DASK_HPC_SESSIONS": str(root), "DASK_HPC_LOCAL_SPOOL": str(spool)}
    local = LocalSystem(spool=spool)
    job = local.submit(local.render(JobSpec(), ["sleep", "60"]), tmp_path / "work")
    try:
        for name, down, scheduler in (("live", False, None), ("ending", True, job), ("old", True, None)):
            session = Session(name, root)
            session.prepare()
            session.write_config(
                SessionConfig(name, "local", JobSpec(), JobSpec(), down=down, scheduler_job_id=scheduler)
            )
        broken = Session("broken", root)
        broken.prepare()
        broken.write_config(SessionConfig("broken", "local", JobSpec(), JobSpec(), down=True))
        broken.ledger_file.write_text('{"jobs": [')  # cut short
        for name, words in (
            ("broken", "its job ledger cannot be read"),
            ("live", "has not ended: end it first with dask-hpc down --name live"),
            ("ending", f"still has job {job} in the queue"),
            ("nosuch", "no session 'nosuch'"),
        ):
            refused = run("forget", "--name", name, env=env)
            assert refused.returncode == 1 and words in refused.stderr, refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
        assert sorted(p.name for p in root.iterdir()) == ["broken", "ending", "live", "old"]
        both = run("forget", "--ended", "--name", "old", env=env)
        assert both.returncode == 2 and both.stderr.startswith("error: give --name NAME or --ended, not both")
        forgot = run("forget", "--ended", env=env)
        assert forgot.returncode == 0 and "session old: forgotten" in forgot.stdout, forgot.stdout
        assert f"kept: session 'ending' still has job {job} in the queue" in forgot.stderr
        assert "kept: session 'broken': its job ledger cannot be read" in forgot.stderr
        assert sorted(p.name for p in root.iterdir()) == ["broken", "ending", "live"]
    finally:
        local.cancel([job])
    deadline = time.monotonic() + 30
    while (
        local.query([job])[job].state in (JobState.PENDING, JobState.RUNNING) and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    forgot = run("forget", "--name", "ending", env=env)
    assert forgot.returncode == 0, forgot.stderr
    assert sorted(p.name for p in root.iterdir()) == ["broken", "live"]
    assert "live" in run("list", env=env).stdout
