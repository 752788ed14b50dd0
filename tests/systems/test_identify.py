"""Submissions that must not go wrong quietly: another system's qsub, an answer we cannot
read, a submit command that does not answer, a refusal (issue 18, item 7).

The batch commands here are small scripts on a private PATH, standing in for a site's:
what is under test is what we do with their answers, not the batch systems.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dask_hpc.errors import SubmitError, SubmitUnclearError, WrongSystemError
from dask_hpc.spec import JobSpec
from dask_hpc.systems import identify
from dask_hpc.systems.identify import qsub_family
from dask_hpc.systems.pbs import PBSSystem, TorqueSystem
from dask_hpc.systems.sge import SGESystem
from dask_hpc.systems.slurm import SlurmSystem

RECORDED = Path(__file__).parent.parent / "recorded"


@pytest.mark.parametrize(
    ("path", "system", "words"),
    [
        ("sge/qstat-version.txt", "sge", "SGE 8.1.9"),
        ("pbs/qstat-version-openpbs.txt", "pbs", "pbs_version = 22.05.11"),
        ("pbs/qstat-version-pbspro.txt", "pbs", "pbs_version = PBSPro_11.1.0.111761"),
        ("pbs/qstat-version-torque.txt", "torque", "Version: 6.1.2"),
        ("pbs/qstat-version-torque-2.5.txt", "torque", "version: 2.5.12"),
    ],
)
def test_qstat_version_tells_the_qsub_families_apart(path: str, system: str, words: str) -> None:
    family = qsub_family((RECORDED / path).read_text())
    assert family is not None and (family.system, family.words) == (system, words)


@pytest.mark.parametrize("text", ["", "qstat: command not found", "Slurm 22.05.8"])
def test_an_answer_we_do_not_know_blocks_nothing(text: str) -> None:
    assert qsub_family(text) is None


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private bin folder first on PATH; the probe's memory is cleared."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(identify, "_seen", {})
    return bin_dir


def command(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.mark.parametrize("chosen", [PBSSystem, TorqueSystem])
def test_grid_engines_qsub_under_a_pbs_system_is_refused_before_submitting(
    site: Path, tmp_path: Path, chosen: type[PBSSystem]
) -> None:
    """The live case: ``up --system pbs`` on Grid Engine submitted, could not read
    'Your job 38 (...) has been submitted', and job 38 ran on with nobody to cancel it."""
    command(site, "qstat", f"cat {RECORDED / 'sge/qstat-version.txt'}; exit 1")
    command(site, "qsub", f"touch {tmp_path / 'submitted'}; echo 'Your job 38 (\"x\") has been submitted'")
    system = chosen()
    with pytest.raises(WrongSystemError) as error:
        system.submit(system.render(JobSpec(), ["true"]), tmp_path / "scripts")
    assert str(error.value) == (
        f"--system {system.name}, but qsub here is Grid Engine's (qstat --version: 'SGE 8.1.9'): "
        "use --system sge"
    )
    assert not (tmp_path / "submitted").exists()
    assert not (tmp_path / "scripts").exists() or not any((tmp_path / "scripts").iterdir())


def test_torques_qsub_under_pbs_pros_flags_is_refused(site: Path, tmp_path: Path) -> None:
    command(site, "qstat", f"cat {RECORDED / 'pbs/qstat-version-torque.txt'}")
    with pytest.raises(WrongSystemError, match=r"qsub here is Torque's .*: use --system torque$"):
        PBSSystem().submit(PBSSystem().render(JobSpec(), ["true"]), tmp_path / "scripts")
    command(site, "qstat", f"cat {RECORDED / 'pbs/qstat-version-openpbs.txt'}")
    identify._seen.clear()
    with pytest.raises(WrongSystemError, match=r"PBS Pro/OpenPBS's .*: use --system pbs$"):
        SGESystem().submit(SGESystem().render(JobSpec(), ["true"]), tmp_path / "scripts")


def test_an_answer_that_is_not_a_job_id_says_where_to_find_the_job(site: Path, tmp_path: Path) -> None:
    command(site, "sbatch", "echo 'sbatch: warning: something new'; echo 'queued as job 4711 on cluster x'")
    system = SlurmSystem()
    with pytest.raises(SubmitUnclearError) as error:
        system.submit(system.render(JobSpec(), ["true"]), tmp_path / "scripts")
    line = str(error.value)
    assert "\n" not in line
    assert line.startswith("sbatch took the job but its answer is not a slurm job id: ")
    assert "queued as job 4711" in line and "find it with squeue --me and cancel it" in line
    (script,) = (tmp_path / "scripts").iterdir()  # kept: it says what the job is
    assert f"(its script: {script})" in line


def test_a_submit_command_that_does_not_answer_may_have_queued_a_job(site: Path, tmp_path: Path) -> None:
    command(site, "sbatch", "exec sleep 30")
    system = SlurmSystem()
    with pytest.raises(SubmitUnclearError, match=r"^sbatch did not answer within 1 s: a job may have been"):
        system.submit(system.render(JobSpec(), ["true"]), tmp_path / "scripts", timeout=1)


def test_a_refused_job_leaves_no_script_behind(site: Path, tmp_path: Path) -> None:
    """adapt once left a script per refusal in the session (22 in 22 s)."""
    refusal = "sbatch: error: Batch job submission failed: Invalid partition"
    command(site, "sbatch", f"echo '{refusal}' >&2; exit 1")
    system = SlurmSystem()
    with pytest.raises(SubmitError, match="Invalid partition"):
        system.submit(system.render(JobSpec(), ["true"]), tmp_path / "scripts")
    assert list((tmp_path / "scripts").iterdir()) == []


def test_lsf_reads_the_script_on_stdin_and_an_unclear_answer_says_so_too(site: Path, tmp_path: Path) -> None:
    """bsub takes its script on standard input; it had a submit of its own that skipped
    what every other system does with an answer it cannot read."""
    from dask_hpc.systems.lsf import LSFSystem

    seen = tmp_path / "stdin.txt"
    command(site, "bsub", f"cat > {seen}; echo 'Job <42> is submitted to queue <normal>.'")
    system = LSFSystem()
    script = system.render(JobSpec(), ["true"])
    assert system.submit(script, tmp_path / "scripts") == "42"
    assert seen.read_text() == script
    command(site, "bsub", "cat > /dev/null; echo 'Job submitted, somehow'")
    with pytest.raises(
        SubmitUnclearError, match="not a lsf job id: 'Job submitted, somehow'; find it with bjobs"
    ):
        system.submit(script, tmp_path / "scripts")
