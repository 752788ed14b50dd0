"""How ``dask-hpc demo`` shows its steps: a spinner or a bar of each step's tasks while it
runs, a "done" line with its time, and a table at the end (rich, on stderr)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from dask_hpc.cli.console import make_console

__all__ = ["RichSteps"]


class RichSteps:
    """The demo's :class:`~dask_hpc.demo.run.StepView` for a terminal (or a log file: the
    "done" lines and the table only)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or make_console(stderr=True)

    @contextmanager
    def step(self, label: str) -> Iterator[Callable[[int, int], None]]:
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        with progress:
            task = progress.add_task(label, total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, total=total, completed=done)

            yield advance

    def done(self, label: str, seconds: float, detail: str) -> None:
        self.console.print(f"  [green]done[/] {label:<44} {seconds:7.2f} s  {detail}")

    def say(self, line: str) -> None:
        self.console.print(f"  {line}")

    def summary(self, seconds: dict[str, float], details: dict[str, str]) -> None:
        table = Table(title="dask-hpc demo: time per step")
        table.add_column("step")
        table.add_column("seconds", justify="right")
        table.add_column("")
        for key, value in seconds.items():
            table.add_row(key, f"{value:.2f}", details.get(key, ""))
        table.add_row("total", f"{sum(seconds.values()):.2f}", "")
        self.console.print(table)
