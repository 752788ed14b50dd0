"""Files and folders that dask-hpc creates: the user's only, whatever the umask.

Sessions hold keys, tokens and job scripts on a filesystem other users share, so every
folder we make is 0700 and every file 0600 (the README promises it). ``mkdir(parents=True,
mode=0o700)`` is not enough: Python gives the parents it creates the umask's mode (0755 under
the usual 022), which is how ``~/.dask-hpc`` came out readable by everyone.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["private_directory", "write_private"]


def private_directory(path: Path) -> Path:
    """Create ``path`` and each missing parent, 0700.

    Folders that exist are left as they are, except ours: ``~/.dask-hpc`` and the folders
    in it on the way to ``path``, which older versions made 0755, are made 0700 again.
    """
    home = Path.home() / ".dask-hpc"
    for ours in [path, *path.parents]:
        if (ours == home or home in ours.parents) and ours.is_dir():
            _tighten(ours)
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made by another process meanwhile
            directory.mkdir(mode=0o700)
            directory.chmod(0o700)  # mkdir's mode is masked by the umask
    return path


def _tighten(directory: Path) -> None:
    """Make one of our own folders 0700 if others may read it (only if it is the user's)."""
    with contextlib.suppress(OSError):
        info = directory.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            directory.chmod(0o700)


def write_private(path: Path, data: Any) -> None:
    """Write JSON readable by the user only (0600), atomically: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    tmp.replace(path)
