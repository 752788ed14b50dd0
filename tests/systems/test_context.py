from __future__ import annotations

import pytest

from dask_hpc import current_job
from dask_hpc.errors import NotInJobError, UnknownSystemError
from dask_hpc.systems import get_system


def test_outside_a_job() -> None:
    with pytest.raises(NotInJobError, match=r"not inside a dask-hpc job: \$DASK_HPC_SYSTEM is not set"):
        current_job({})
    with pytest.raises(NotInJobError, match=r"not inside a sge job: \$JOB_ID is not set"):
        current_job({"DASK_HPC_SYSTEM": "sge"})


def test_end_time_from_the_scripts_start_and_walltime(tmp_path: object) -> None:
    env = {
        "DASK_HPC_SYSTEM": "lsf",
        "LSB_JOBID": "12",
        "LSB_HOSTS": "c1 c1",
        "DASK_HPC_JOB_START": "1000",
        "DASK_HPC_WALLTIME": "600",
    }
    job = current_job(env)
    assert (job.system, job.job_id, job.nodes, job.end_time) == ("lsf", "12", ("c1",), 1600.0)
    assert job.seconds_left(now=1500.0) == 100.0


def test_unknown_system_name_lists_known_ones() -> None:
    with pytest.raises(
        UnknownSystemError, match="known systems: htcondor, local, lsf, moab, oar, pbs, sge, slurm, torque"
    ):
        get_system("loadleveler")
    assert get_system(" SLURM ").name == "slurm"
