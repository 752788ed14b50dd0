"""``python -m dask_hpc`` is the ``dask-hpc`` command."""

from dask_hpc.cli import main

main()
