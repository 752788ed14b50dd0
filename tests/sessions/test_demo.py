"""``dask-hpc demo``: the xarray workflow on a real session, its numbers, and bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from dask_hpc.demo import sst

from .conftest import HPC, bring_up, processes_mentioning, systems
from .test_bad_input import one_error_line

pytestmark = pytest.mark.timeout(400)


def demo(hpc: HPC, output: Path, *args: str, check: bool = True) -> dict[str, object] | str:
    done = hpc("demo", "--system", hpc.system, "--output", str(output), *args, timeout=360, check=check)
    if done.returncode != 0:
        return one_error_line(done)
    report: dict[str, object] = json.loads((output / "demo.json").read_text())
    return report


@pytest.mark.parametrize("system", systems("local", "slurm"))
def test_demo_computes_the_known_climatology_and_cleans_up(
    system: str, hpc_for: Callable[[str], HPC], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    bring_up(system, request)
    hpc = hpc_for(system)
    # 40 days: all of January and 9 days of February, so the month boundary is checked too.
    report = demo(hpc, tmp_path / "out", "--files", "40", "--workers", "2")
    assert isinstance(report, dict)
    assert report["workers"] == 2
    assert report["files"] == 40 and report["variable"] == "sst"
    assert report["shape"] == [40, *sst.GRID]
    check = report["check"]
    assert isinstance(check, dict)
    assert check["ok"] is True and check["months"] == 2, check
    low, high = check["rms_error_in_noise_units"]
    assert 0.9 < low <= high < 1.1, check  # the noise of each month averaged over its own days
    assert report["fetched_shape"] == [40, *sst.GRID]  # the second client saw the published anomalies
    assert (tmp_path / "out" / "sst_anomaly.png").stat().st_size > 20_000
    assert len(list((tmp_path / "out" / "data").glob("sst_*.nc"))) == 40
    assert set(report["seconds"]) >= {"session", "write", "open", "persist", "climatology", "anomalies"}
    # The demo's own session is ended: nothing of it runs any more.
    assert hpc.status("demo")["down"] is True
    assert not processes_mentioning(str(hpc.session("demo").directory))


def test_demo_on_your_own_files_in_a_live_session(hpc_for: Callable[[str], HPC], tmp_path: Path) -> None:
    hpc = hpc_for("local")
    data = tmp_path / "mydata"
    data.mkdir()
    for day in range(10):
        sst.write_day(str(data), day)
    hpc.up("mine", "--workers", "1", "--wait", "60")
    report = demo(
        hpc, tmp_path / "out", "--session", "mine", "--data", str(data / "sst_2001*.nc"), "--var", "sst"
    )
    assert isinstance(report, dict)
    assert report["files"] == 10 and "check" not in report and report["session"] == "mine"
    assert hpc.status("mine")["scheduler"]["answering"] is True  # a session it did not start is kept


def test_bad_data_gets_one_line_and_no_job(hpc_for: Callable[[str], HPC], tmp_path: Path) -> None:
    hpc = hpc_for("local")
    data = tmp_path / "data"
    data.mkdir()
    line = demo(hpc, tmp_path / "out", "--data", str(data / "*.nc"), check=False)
    assert "no files match" in str(line) and "*.nc" in str(line)
    line = demo(hpc, tmp_path / "out", "--data", str(data), check=False)
    assert "no NetCDF files" in str(line)

    sst.write_day(str(data), 0)
    (data / "notes.nc").write_text("not netcdf\n")
    line = demo(hpc, tmp_path / "out", "--data", str(data), check=False)
    assert f"{data / 'notes.nc'} is not a NetCDF file" in str(line)

    (data / "notes.nc").unlink()
    line = demo(hpc, tmp_path / "out", "--data", str(data), "--var", "temperature", check=False)
    assert "no variable 'temperature' in the files; their fields: sst" in str(line)
    # Refused before anything was submitted: no session was started.
    assert not hpc.session("demo").exists()


def test_submission_refused_by_the_system_is_shown_with_its_reason(
    slurm_up: None, hpc_for: Callable[[str], HPC], tmp_path: Path
) -> None:
    hpc = hpc_for("slurm")
    # A QOS SLURM does not know (a partition it lacks, or an account the user has no
    # association with, is refused before anything is submitted: test_bad_input.py).
    qos = ("--job-extra-directive", "--qos=no-such-qos")
    done = hpc("demo", "--system", "slurm", *qos, "--output", str(tmp_path), check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    # The error line, then the system's own words below it.
    assert done.stderr.startswith("error: slurm refused the job: sbatch --parsable"), done.stderr
    assert "invalid qos specification" in done.stderr.lower()


def test_the_examples_run_on_a_session(hpc_for: Callable[[str], HPC], tmp_path: Path) -> None:
    """examples/: the script and the notebook a scientist would copy, on a live session."""
    import shutil
    import subprocess
    import sys

    examples = Path(__file__).resolve().parents[2] / "examples"
    hpc = hpc_for("local")
    data = tmp_path / "dask-hpc-demo" / "data"  # where the notebook looks by default
    data.mkdir(parents=True)
    for day in range(20):
        sst.write_day(str(data), day)
    hpc.up("default", "--workers", "1", "--wait", "60")
    env = {**hpc.env, "MPLBACKEND": "Agg"}
    script = subprocess.run(
        [sys.executable, str(examples / "sst_climatology.py"), str(data / "sst_*.nc"), "sst"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert script.returncode == 0, script.stderr
    assert "20 days; monthly climatology of 1 months" in script.stdout

    notebook = tmp_path / "sst_climatology.ipynb"
    shutil.copy(examples / "sst_climatology.ipynb", notebook)
    run = subprocess.run(
        [
            *(sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace"),
            *("--ExecutePreprocessor.timeout=180", str(notebook)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    cells = json.loads(notebook.read_text())["cells"]
    outputs = json.dumps([c.get("outputs", []) for c in cells if c["cell_type"] == "code"])
    assert "sst_anomaly" in outputs and '"output_type": "error"' not in outputs


def test_demo_on_model_output_of_every_calendar(hpc_for: Callable[[str], HPC], tmp_path: Path) -> None:
    """Real model output is 4-D, in any CF calendar, with attributes that differ file by file:
    the demo runs to its table and figure on each, at the level asked for. (The aliases
    gregorian, 365_day and 366_day decode as standard, noleap and all_leap: tests/data.)"""
    from tests.data import model_output

    hpc = hpc_for("local")
    hpc.up("cmip", "--workers", "2", "--wait", "60")
    for calendar in ("standard", "proleptic_gregorian", "noleap", "all_leap", "360_day", "julian"):
        model_output.by_year(tmp_path / calendar, calendar, range(2000, 2003))
        out = tmp_path / f"out-{calendar}"
        report = demo(
            hpc, out, "--session", "cmip", "--data", str(tmp_path / calendar / "*.nc"), "--level", "50000"
        )
        assert isinstance(report, dict), (calendar, report)
        assert report["variable"] == "ta" and report["shape"] == [36, 4, 6, 8]
        assert report["calendar"] == calendar  # as the files name it
        assert report["level"]["text"] == "plev = 50000 Pa"
        assert report["fetched_shape"] == [36, 6, 8]
        assert (out / "ta_anomaly.png").stat().st_size > 20_000
