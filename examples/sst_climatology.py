"""Monthly climatology and anomalies of daily SST files, on a dask-hpc session.

Copy and adapt. Start a session first, for example on SLURM:

    dask-hpc up --system slurm --queue regular --walltime 1h --workers 4 --wait 600

then run, with your own files (quote the glob):

    python sst_climatology.py '/glade/data/sst_*.nc' sst

In a JupyterLab started with ``dask-hpc up --jupyter`` the same cells work as
they are; examples/sst_climatology.ipynb is this script as a notebook.
"""

import sys

import numpy as np

import dask_hpc
from dask_hpc.demo.workflow import anomalies

pattern = sys.argv[1] if len(sys.argv) > 1 else "dask-hpc-demo/data/sst_*.nc"
name = sys.argv[2] if len(sys.argv) > 2 else "sst"

# The session's scheduler, with its TLS certificate: only you can connect.
client = dask_hpc.connect()
print(client)

# What xr.open_mfdataset gives, with the files opened on the workers, a batch of files per
# task and per chunk (xarray's parallel=True: a task and a chunk per file).
# "minimal"/"override": concatenate only what has a time axis, take the rest from the
# first file, instead of comparing every file's coordinates.
ds = dask_hpc.open_mfdataset(
    pattern,
    combine="by_coords",
    data_vars="minimal",
    coords="minimal",
    compat="override",
)
field = ds[name].persist()  # into the workers' memory: later steps do not read the files again

climatology = field.groupby("time.month").mean("time").persist()
# Each step minus its month, chunk by chunk (field.groupby("time.month") - climatology
# would make a chunk per time step).
anomaly = anomalies(field, climatology).persist()

# Other notebooks and scripts of this session can now use the anomalies without
# recomputing them: dask_hpc.connect().get_dataset("sst_anomaly")
if "sst_anomaly" in client.list_datasets():
    client.unpublish_dataset("sst_anomaly")
client.publish_dataset(anomaly, name="sst_anomaly")

weights = np.cos(np.deg2rad(field["lat"]))  # area of a grid cell
series = anomaly.weighted(weights).mean(["lat", "lon"]).compute()
print(f"{field.sizes['time']} days; monthly climatology of {climatology.sizes['month']} months")
print(f"global-mean anomaly: from {float(series.min()):+.3f} to {float(series.max()):+.3f}")
