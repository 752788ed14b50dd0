"""Folders dask-hpc makes are the user's only, whatever the umask (issue 18, item 6)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dask_hpc.files import private_directory


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_parents_are_private_under_any_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        private_directory(tmp_path / "a" / "b" / "c")
    finally:
        os.umask(old)
    assert [mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3


def test_our_folders_made_open_by_older_versions_are_closed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    home = tmp_path / ".dask-hpc"
    (home / "sessions").mkdir(parents=True)
    for p in (home, home / "sessions"):
        p.chmod(0o755)
    tmp_path.chmod(0o755)
    private_directory(home / "sessions" / "climate")
    assert [mode(p) for p in (home, home / "sessions", home / "sessions" / "climate")] == [0o700] * 3
    assert mode(tmp_path) == 0o755  # not ours: left alone
    elsewhere = tmp_path / "project"
    elsewhere.mkdir(mode=0o755)
    elsewhere.chmod(0o755)
    private_directory(elsewhere / "logs")
    assert mode(elsewhere) == 0o755 and mode(elsewhere / "logs") == 0o700
