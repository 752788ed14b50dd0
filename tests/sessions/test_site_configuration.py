"""A site's configuration end to end on the real SLURM: with a site file and a profile for
this host, ``dask-hpc up`` and ``dask-hpc add`` need no flag (issue 21's done-when)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from .conftest import HPC, bring_up, live_jobs, poll


@pytest.mark.slurm
def test_a_site_file_and_a_profile_need_no_flag_on_slurm(
    hpc_for: Callable[[str], HPC], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    bring_up("slurm", request)
    hpc = hpc_for("slurm")
    site, user = tmp_path / "etc-dask", tmp_path / "user-dask"
    site.mkdir()
    user.mkdir()
    profile = {
        "match": socket.gethostname(),  # this machine is the profile's
        "system": "slurm",
        "queue": "short",  # a partition of scripts/local-slurm, with a 10-minute limit
        "walltime": "5m",
        "memory": "1GiB",
        "job-name": "from-the-profile",
    }
    (site / "dask-hpc.yaml").write_text(yaml.safe_dump({"dask-hpc": {"profiles": {"here": profile}}}))
    hpc.env.update(DASK_ROOT_CONFIG=str(site), DASK_CONFIG=str(user))

    shown = hpc("config", "--json")
    assert '"profile": "here"' in shown.stdout, shown.stdout
    hpc("up", "--name", "site", "--refresh", "1", "--timeout", "120")  # no --system, no job option
    hpc("add", "1", "--name", "site", "--wait", "90")
    report = hpc.status("site")
    assert report["system"] == "slurm"
    (job,) = live_jobs(report)
    assert (job["job_name"], job["walltime"], job["workers"]) == ("from-the-profile", 300, 1)
    hpc("down", "--name", "site")
    poll("the session to be down", lambda: hpc.status("site")["down"] is True or None, timeout=60)
