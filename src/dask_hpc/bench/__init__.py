"""The library code of ``dask-hpc bench``: :mod:`~dask_hpc.bench.network` measures how fast
data moves between two workers against raw TCP, MPI and memcpy on the same nodes.
"""
