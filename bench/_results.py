"""What every benchmark records: the machine it ran on, and its results as JSON in bench/results/."""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine(**versions: str | None) -> dict[str, Any]:
    """This machine, and the versions of what was compared."""
    import dask
    import distributed

    return {
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        **versions,
    }


def slurm_and_jobqueue() -> dict[str, str | None]:
    """The versions of the local SLURM and of dask-jobqueue, for benchmarks against it there."""
    import subprocess

    try:
        import dask_jobqueue

        jobqueue: str | None = dask_jobqueue.__version__
    except ImportError:
        jobqueue = None
    slurm = subprocess.run(["sinfo", "-V"], capture_output=True, text=True).stdout.strip()
    return {"dask_jobqueue": jobqueue, "slurm": slurm}


def write(benchmark: str, result: dict[str, Any]) -> Path:
    """Write ``result`` with the benchmark's name and the date; print and return the path."""
    RESULTS.mkdir(exist_ok=True)
    data = {"benchmark": benchmark, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **result}
    path = RESULTS / f"{benchmark}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"\nwritten to {path}")
    return path
