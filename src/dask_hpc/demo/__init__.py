"""``dask-hpc demo``: the xarray workflow (:mod:`~dask_hpc.demo.workflow`) on a synthetic
dataset (:mod:`~dask_hpc.demo.sst`) or the user's files, run by :mod:`~dask_hpc.demo.run`.
"""
