"""The web pages beside the scheduler: JupyterLab (:mod:`~dask_hpc.web.jupyter`) and the
SSH tunnel line that reaches them from a laptop (:mod:`~dask_hpc.web.tunnel`).
"""
