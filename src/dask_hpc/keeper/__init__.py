"""The keeper: the part inside a session's scheduler that owns its worker jobs.

- :mod:`~dask_hpc.keeper.plugin`: the scheduler plugin (scale, adapt, replacing jobs before their walltime);
- :mod:`~dask_hpc.keeper.decisions`: its decisions, pure functions of what it knows;
- :mod:`~dask_hpc.keeper.protocol`: the requests and answers its handlers take and give;
- :mod:`~dask_hpc.keeper.scripts`: the commands and job scripts that jobs run.

Nothing is imported here: the plugin needs distributed (a second to import), the
commands that only read a session's state must not pay for it.
"""
