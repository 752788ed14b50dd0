"""``python -m dask_hpc`` is the ``dask-hpc`` command."""

from .cli import main

main()
