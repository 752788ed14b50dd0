"""``dask-hpc demo``: the whole product in one command, on an xarray workflow.

Starts a session (or uses a live one), writes a year of synthetic daily SST
files (or takes the user's NetCDF files), opens them in parallel on the
workers, persists them in the workers' memory, computes a monthly climatology
and anomalies, publishes the anomalies and fetches them from a second client,
draws a figure, and prints the time of every step. The session is ended at
the end (also on an error or Ctrl-C) unless ``keep``.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dask_hpc.demo import sst, workflow
from dask_hpc.errors import DaskHPCError, DataError
from dask_hpc.files import private_directory
from dask_hpc.session import lifecycle
from dask_hpc.state.session import Session

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

__all__ = ["DEMO_SESSION", "StepView", "run_demo"]

DEMO_SESSION = "demo"
#: The demo's worker jobs, unless the user gives other options.
JOB_DEFAULTS = {"walltime": "30m", "memory": "2GiB", "job_name": "dask-hpc-demo"}


class StepView(Protocol):
    """How the steps are shown; the CLI's is :class:`dask_hpc.cli.demo_view.RichSteps`."""

    def step(self, label: str) -> AbstractContextManager[Callable[[int, int], None]]:
        """While the step runs; gives a function of (tasks done, tasks in all)."""

    def done(self, label: str, seconds: float, detail: str) -> None:
        """A step has finished, in ``seconds``."""

    def say(self, line: str) -> None:
        """A line about the run (not a step)."""

    def summary(self, seconds: dict[str, float], details: dict[str, str]) -> None:
        """Every step's time, at the end of a run that got there."""


@dataclass
class Steps:
    """Times each step and keeps what it found; shows them through ``view``, if any."""

    view: StepView | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    _advance: Callable[[int, int], None] | None = None

    @contextmanager
    def step(self, key: str, label: str) -> Iterator[None]:
        t0 = time.perf_counter()
        if self.view is None:
            yield
        else:
            with self.view.step(label) as advance:
                self._advance = advance
                try:
                    yield
                finally:
                    self._advance = None
        self.seconds[key] = time.perf_counter() - t0
        if self.view is not None:
            self.view.done(label, self.seconds[key], self.details.get(key, ""))

    def track(self, futures: list[Any]) -> None:
        """Show the step's tasks finishing; raise the first error."""
        from distributed import as_completed

        for done, future in enumerate(as_completed(futures), 1):
            if future.status == "error":
                future.result()  # raises the task's error
            if self._advance is not None:
                self._advance(done, len(futures))

    def say(self, line: str) -> None:
        if self.view is not None:
            self.view.say(line)


def run_demo(
    *,
    system: str = "local",
    system_settings: dict[str, Any] | None = None,
    workers: int = 2,
    files: int = 365,
    data: str | None = None,
    variable: str | None = None,
    level: float | None = None,
    session_name: str | None = None,
    options: dict[str, Any] | None = None,
    output: Path = Path("dask-hpc-demo"),
    keep: bool = False,
    timeout: float = 300.0,
    view: StepView | None = None,
) -> dict[str, Any]:
    """Run the demo; return what it measured and found (also written to ``output/demo.json``).

    ``view`` shows the steps as they run (the CLI gives a rich one); None shows nothing.
    """
    missing = [m for m in ("xarray", "netCDF4", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:
        raise DaskHPCError(f"the demo needs {', '.join(missing)}: pip install 'dask-hpc[xarray]'")
    steps = Steps(view)
    output = output.expanduser().absolute()
    files_given = data is not None
    if level is not None and not files_given:
        raise DataError(f"--level {level:g} needs --data: the synthetic SST has no levels")
    if files_given:
        assert data is not None
        paths = workflow.find_files(data)  # bad input is refused before any job is submitted
        workflow.check_variable(paths[0], variable, level)
    private_directory(output)  # only once the input is known to be good: a failed run leaves nothing
    own_session = session_name is None
    session = Session(session_name or DEMO_SESSION)
    report: dict[str, Any] = {"session": session.name, "system": system}
    if own_session:
        with steps.step("session", f"start a session on {system} with {workers} worker jobs"):
            _start_session(session, system, workers, options or {}, timeout, system_settings)
            steps.details["session"] = f"session {session.name!r}"
    try:
        client = control_client(session)
        with client:
            n_workers = len(client.scheduler_info()["workers"])
            report["workers"] = n_workers
            if not files_given:
                with steps.step("write", f"write {files} daily SST files (on the workers)"):
                    paths = _write_synthetic(client, output / "data", files, steps)
                    steps.details["write"] = f"{len(paths)} files in {output / 'data'}"
            report.update(
                _analyse(client, session, paths, variable, level, output, steps, synthetic=not files_given)
            )
    finally:
        if own_session and not keep:
            lifecycle.down(session)
            steps.say(f"session {session.name!r} ended (use --keep to leave it running)")
    report["seconds"] = steps.seconds
    report["details"] = steps.details
    if view is not None:
        view.summary(steps.seconds, steps.details)
    (output / "demo.json").write_text(json.dumps(report, indent=1))
    check = report.get("check")
    if check and not check["ok"]:
        raise DaskHPCError(f"the climatology does not match the known seasonal cycle: {check}")
    return report


def control_client(session: Session) -> Client:
    from dask_hpc.session.cluster import connect

    return connect(session.name)


def _start_session(
    session: Session,
    system: str,
    workers: int,
    options: dict[str, Any],
    timeout: float,
    system_settings: dict[str, Any] | None = None,
) -> None:
    from dask_hpc.systems import get_system

    batch = get_system(system, system_settings)
    given = {**JOB_DEFAULTS, **{k: v for k, v in options.items() if v not in (None, (), "")}}
    spec, scheduler_spec = lifecycle.session_specs(
        session.name, given, logs=session.logs, walltime_fields=batch.walltime_fields
    )
    batch.render(spec, [])  # options this system cannot take: refused before submitting
    lifecycle.up(session, batch, spec, scheduler_spec, workers=workers, timeout=timeout)
    client = control_client(session)
    with client:
        client.wait_for_workers(workers * spec.workers, timeout=timeout)


def _write_synthetic(client: Client, directory: Path, n: int, steps: Steps) -> list[str]:
    private_directory(directory)
    for old in directory.glob("sst_*.nc"):  # a shorter run after a longer one: only this run's days
        old.unlink()
    futures = client.map(sst.write_day, [str(directory)] * n, range(n), pure=False)
    steps.track(futures)
    return sorted(client.gather(futures))


def _analyse(
    client: Client,
    session: Session,
    paths: list[str],
    variable: str | None,
    level: float | None,
    output: Path,
    steps: Steps,
    *,
    synthetic: bool,
) -> dict[str, Any]:
    from distributed import futures_of, wait

    from dask_hpc.session.cluster import connect

    found: dict[str, Any] = {"files": len(paths)}
    with steps.step("open", f"open {len(paths)} NetCDF files on the workers"):
        ds = workflow.open_files(client, paths)
        name = workflow.choose_variable(ds, variable)
        found.update(variable=name, shape=list(ds[name].shape), calendar=_calendar(ds))
        field_, shown = workflow.select_level(ds[name], level)
        found["level"] = shown
        at = f" at {shown['text']}" if shown else ""
        steps.details["open"] = f"{name} {dict(ds[name].sizes)}{at}"

    with steps.step("persist", "load them into the workers' memory (persist)"):
        field_ = field_.persist()
        steps.track(futures_of(field_))
        steps.details["persist"] = f"{_size(field_.nbytes)} in {len(futures_of(field_))} chunks"

    with steps.step("climatology", "monthly climatology"):
        clim = workflow.climatology(field_).persist()
        wait(clim)
        steps.details["climatology"] = f"{clim.sizes['month']} months"

    with steps.step("anomalies", "anomalies: each step minus its month"):
        anomaly = workflow.anomalies(field_, clim).persist()
        steps.track(futures_of(anomaly))
        series = workflow.global_mean(anomaly).compute()
        low, high = float(series.min()), float(series.max())
        steps.details["anomalies"] = f"global mean from {low:+.3f} to {high:+.3f} K"

    with (
        steps.step("publish", f"publish as {f'{name}_anomaly'!r}; fetch from another client"),
        connect(session.name) as other,
    ):
        shape = workflow.publish_and_fetch(client, anomaly, other)
        found.update(published=str(anomaly.name), fetched_shape=list(shape))
        steps.details["publish"] = f"the other client sees {shape}"

    with steps.step("figure", "figure: anomaly map and global-mean series"):
        found["figure"] = workflow.plot(
            anomaly, series, output / f"{name}_anomaly.png", shown["text"] if shown else ""
        )
        steps.details["figure"] = found["figure"]["path"]

    if synthetic:
        with steps.step("check", "check against the known seasonal cycle"):
            check = found["check"] = _check(clim, int(field_.sizes["time"]))
            low, high = check["rms_error_in_noise_units"]
            steps.details["check"] = (
                f"{'right' if check['ok'] else 'WRONG'}: rms error {low:.2f}-{high:.2f} of the noise, "
                f"zonal means within {check['zonal_error_in_standard_errors']:.1f} standard errors"
            )
    else:  # said, not silently left out: only the synthetic field's climatology is known beforehand
        steps.say("(no check: the climatology of your files is not known beforehand)")
    return found


def _size(nbytes: int) -> str:
    """Bytes as a person reads them: 90 MiB, 380 KiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.0f} {unit}"
    return f"{nbytes} B"


def _calendar(ds: xr.Dataset) -> str | None:
    """The calendar of the time axis: as the files name it, else as xarray names it."""
    if "time" not in ds.coords:
        return None
    if "calendar" in ds["time"].encoding:
        return str(ds["time"].encoding["calendar"])
    try:
        return str(ds["time"].dt.calendar)
    except (AttributeError, TypeError):
        return None


def _check(clim: xr.DataArray, days: int) -> dict[str, Any]:
    """How far the computed climatology is from the exact one of the noise-free field.

    A month of ``n`` days averages the noise down to ``NOISE / sqrt(n)`` per point: the rms
    error, in those units, must be about 1 (it would not be if days were lost, doubled or
    put in the wrong month), and the zonal means must agree within 6 of their own standard
    errors.
    """
    import numpy as np

    computed = clim.compute()
    worst_zonal, ratios = 0.0, []
    for month, (exact, count) in sst.expected_climatology(days).items():
        got = computed.sel(month=month).values.astype(np.float64)
        noise = sst.NOISE / count**0.5
        zonal = float(np.abs(got.mean(axis=1) - exact.mean(axis=1)).max())
        worst_zonal = max(worst_zonal, zonal / (noise / got.shape[1] ** 0.5))
        ratios.append(float(np.sqrt(((got - exact) ** 2).mean())) / noise)
    return {
        "months": int(computed.sizes["month"]),
        "zonal_error_in_standard_errors": worst_zonal,
        "rms_error_in_noise_units": [min(ratios), max(ratios)],
        "ok": worst_zonal < 6 and min(ratios) > 0.9 and max(ratios) < 1.1,
    }
