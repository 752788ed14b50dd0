"""Worker jobs of several nodes (issue 22): the lines of a job script that start the worker
command once on each of the job's nodes, with the batch system's own launcher.

SLURM's ``srun`` carries the job's environment and its argv as they are (slurm.py). The
other launchers do not:

* ``pbsdsh`` (PBS Pro, Torque) starts its program in the MOM's bare environment, not the
  job's, so a ``module load`` or a conda environment of the prologue would be missing;
* ``blaunch`` (LSF), ``qrsh -inherit`` (Grid Engine) and ``oarsh`` (OAR) stand in for
  rsh/ssh: the words of the command are joined and read again by a shell on the node, so
  quoting made on the first node is lost.

So on those systems the first node writes a *node script*: this job's exported environment
(``export -p``, after the prologue), a ``cd`` to the job's directory and the worker command,
quoted once, as it would have run here. Each node runs ``/bin/bash <node script>``. The
file is private (umask 077) under ``~/.dask-hpc/jobs``, which must be on a file system the
nodes share (the home directory, as dask-hpc's session directory already is), and removed
when the job script ends, cancelled with SIGTERM too (PBS, LSF); one left by a job killed
outright (SIGKILL: Grid Engine's qdel by default) is removed by the next job of several
nodes a day later (by then every node has read it).
"""

from __future__ import annotations

from collections.abc import Sequence

from dask_hpc.systems.base import shell_command

__all__ = ["NODE_SCRIPT", "each_node", "node_script_lines"]

#: The node script's path, as the job's shell expands it: one per running job script
#: (host and process id), since an LSF array's tasks share one LSB_JOBID.
NODE_SCRIPT = '"$HOME/.dask-hpc/jobs/$(hostname)-$$.sh"'

#: Variables that are the node's own, not the job's: left out of the node script, so that
#: each node keeps its value, or has none: pbsdsh sets PBS_TASKNUM... for each task it
#: starts; the GPUs a node gives the job (CUDA_VISIBLE_DEVICES, set there by the batch
#: system's cgroup or its GPU plugin, AMD's and Intel's likewise) and LSF's CPU binding of
#: each host (LSB_BIND_*) are that node's, and the first node's would hide the others' GPUs
#: or bind to CPUs they do not hold. TMPDIR is TMPDIR_LINE's.
NODE_OWN = (
    r"HOSTNAME|PWD|OLDPWD|SHLVL|_|PBS_TASKNUM|PBS_NODENUM|PBS_VNODENUM|SSH_[A-Z_]*|TMPDIR"
    r"|CUDA_VISIBLE_DEVICES|ROCR_VISIBLE_DEVICES|HIP_VISIBLE_DEVICES|GPU_DEVICE_ORDINAL"
    r"|ZE_AFFINITY_MASK|LSB_BIND_[A-Z_]*"
)

#: The job's TMPDIR (node-local scratch: ``--local-directory '$TMPDIR'``) where a node's
#: launcher gives it none; a node's own wins (PBS, Grid Engine and LSF make one per job on
#: every node, under the same name on most sites, not all).
TMPDIR_LINE = (
    """    export -p | grep -E '^(declare -x|export) TMPDIR=' | sed 's/^/[ -n "${TMPDIR-}" ] || /'"""
)

#: The here-document's end word: the worker command between them is written as it is.
_END = "DASK_HPC_WORKER_COMMAND"


def node_script_lines(command: Sequence[str], launcher: str, launch: Sequence[str]) -> list[str]:
    """The lines that write the node script for ``command`` and then run ``launch``, which
    starts ``/bin/bash "$node_script"`` on every node of the job with ``launcher`` (named in
    the script's comment)."""
    return [
        f"# Start the workers on each of the job's nodes with {launcher}, which gives them neither",
        "# this job's environment nor its quoting: each node runs a script of this job's",
        "# environment and the worker command (private; removed when this job script ends, and",
        "# a day later by the next job if this one was killed outright).",
        'export DASK_HPC_JOB_DIR="$PWD"',
        f"node_script={NODE_SCRIPT}",
        '(umask 077 && mkdir -p "${node_script%/*}" && {',
        f"    export -p | grep -Ev '^(declare -x|export) ({NODE_OWN})(=|$)'",
        TMPDIR_LINE,
        """    echo 'cd "$DASK_HPC_JOB_DIR" 2>/dev/null || :'""",
        f"    cat <<'{_END}'",
        f"exec {shell_command(command)}",
        _END,
        '} > "$node_script")',
        """find "${node_script%/*}" -name '*.sh' -mmin +1440 -delete 2>/dev/null""",
        """trap 'rm -f "$node_script"' EXIT""",
        "trap 'exit 143' TERM INT HUP  # cancelled: the EXIT trap still runs",
        *launch,
    ]


def each_node(hosts: str, start: str) -> list[str]:
    """Lines that run ``start`` (a command naming ``"$node"``) in the background for each
    host that the shell expression ``hosts`` lists, then wait for all of them: the job
    ends when the last node's workers do, failed if any of them failed."""
    return [
        'pids=""',
        f"for node in {hosts}; do",
        f"    {start} &",
        '    pids="$pids $!"',
        "done",
        "status=0",
        'for pid in $pids; do wait "$pid" || status=$?; done',
        'test "$status" -eq 0',
    ]
