"""Many NetCDF files as one xarray dataset, opened and read by the cluster's workers.

* ``open.py``: :func:`open_mfdataset`, xarray's steps with the opens on the workers.
* ``reader.py``: what runs where the files are: opening, and the arrays that read them.
* ``batches.py``: chunks of a batch of files, where the values stay the same.
"""

from dask_hpc.data.open import open_mfdataset

__all__ = ["open_mfdataset"]
