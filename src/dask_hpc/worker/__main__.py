"""``python -m dask_hpc.worker``: what a worker job runs (see :mod:`dask_hpc.worker.entry`)."""

from dask_hpc.worker.entry import main

main()
