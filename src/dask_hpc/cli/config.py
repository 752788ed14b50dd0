"""``dask-hpc config``: every setting as resolved here, and where each came from."""

from __future__ import annotations

import json

import click
from rich.table import Table

from dask_hpc.cli.console import make_console
from dask_hpc.cli.options import system_option
from dask_hpc.config import resolve
from dask_hpc.spec import format_walltime
from dask_hpc.systems import get_system

__all__ = ["config"]


@click.command()
@system_option
@click.option("--profile", help="use this site profile instead of the one chosen by the host name")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def config(system: str | None, profile: str | None, as_json: bool) -> None:
    """Every setting as the commands would use it here, and where it came from (a flag, the
    environment, a user or site file, jobqueue.yaml, a site profile, or the default)."""
    if system is not None:
        get_system(system)  # a name we do not know is one line, as for every other command
    configuration = resolve({"system": system, "profile": profile})
    if as_json:
        data = {
            "system": configuration.system,
            "profile": configuration.profile,
            "settings": {
                k: {"value": s.value, "source": s.source} for k, s in configuration.settings.items()
            },
            "unused": configuration.unused,
        }
        click.echo(json.dumps(data, indent=1, default=str))
        return
    console = make_console()
    table = Table(title=f"dask-hpc configuration for {configuration.system}")
    for column in ("setting", "value", "from"):
        table.add_column(column)
    for key, setting in configuration.settings.items():
        table.add_row(key, _shown(key, setting.value), setting.source)
    console.print(table)
    console.print(f"site profile: {configuration.profile or 'none (no profile matches this host)'}")
    for line in configuration.unused:
        console.print(f"not used by dask-hpc (yet): {line}")


def _shown(key: str, value: object) -> str:
    """A value as the flags take it: 2 GiB and 1:00:00, not bytes and seconds."""
    if key == "memory" and isinstance(value, int):
        from dask.utils import format_bytes

        return format_bytes(value)
    if key == "walltime" and isinstance(value, int):
        return format_walltime(value)
    return str(value)
