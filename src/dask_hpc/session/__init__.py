"""Sessions as a user drives them: the life cycle the commands run
(:mod:`~dask_hpc.session.lifecycle`), the link to a session's keeper
(:mod:`~dask_hpc.session.link`) and ``BatchCluster`` (:mod:`~dask_hpc.session.cluster`).

Nothing is imported here: ``BatchCluster`` needs distributed, the commands need not.
"""
