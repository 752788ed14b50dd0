"""``mpi://``: distributed's comm backend over MPI (entry point ``distributed.comm.backends``),
for processes that are ranks of one MPI job; :mod:`~dask_hpc.comm.buffers` keeps its receive memory.
"""
