"""A worker job: ``python -m dask_hpc.worker`` (:mod:`~dask_hpc.worker.entry`), and its
workers' retirement before the job's walltime ends (:mod:`~dask_hpc.worker.retirement`).
"""
