"""The one way the commands make a rich Console."""

from __future__ import annotations

from rich.console import Console

__all__ = ["make_console"]

#: Lines are this wide when the output is not a terminal (a pipe, a log file, a notebook's
#: cell): rich's 80 columns would wrap paths and job lines in the middle.
WIDTH_WHEN_PIPED = 160


def make_console(stderr: bool = False) -> Console:
    """A Console for stdout (or stderr) as wide as the terminal, or 160 columns without one."""
    probe = Console(stderr=stderr)
    return Console(stderr=stderr, highlight=False, width=None if probe.is_terminal else WIDTH_WHEN_PIPED)
