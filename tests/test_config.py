"""dask-hpc's configuration: every source in its place, each value with where it came from,
and bad configuration as one line naming the file, the key, the value and the fix.

Nothing here reads this machine's configuration: every test gives its own site and user
directories, environment and host name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dask_hpc.config import Configuration, resolve
from dask_hpc.errors import ConfigError


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    site, user = tmp_path / "etc-dask", tmp_path / "home-config-dask"
    site.mkdir()
    user.mkdir()
    return {"site": site, "user": user}


def write(directory: Path, name: str, data: object) -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(data))
    return path


def configured(dirs: dict[str, Path], given: dict[str, object] | None = None, **kw: object) -> Configuration:
    environ = kw.pop("environ", {})
    host = kw.pop("host", "login1")
    assert not kw
    return resolve(
        given,
        environ=environ,  # type: ignore[arg-type]
        directories=[("site", dirs["site"]), ("user", dirs["user"])],
        host=host,  # type: ignore[arg-type]
    )


def test_nothing_configured_is_dask_hpcs_defaults(dirs: dict[str, Path]) -> None:
    c = configured(dirs)
    assert c.system == "local" and c.profile is None and c.unused == []
    assert (c.get("cores"), c.settings["cores"].source) == (1, "default")
    assert c.spec_options() == {}
    assert "account" not in c.settings


def test_each_source_in_its_place(dirs: dict[str, Path]) -> None:
    site = write(dirs["site"], "dask-hpc.yaml", {"dask-hpc": {"account": "site-acct", "queue": "regular"}})
    user = write(dirs["user"], "dask-hpc.yaml", {"dask-hpc": {"account": "my-acct", "walltime": "2h"}})
    c = configured(dirs)
    assert (c.get("account"), c.settings["account"].source) == ("my-acct", f"user file {user}")
    assert (c.get("queue"), c.settings["queue"].source) == ("regular", f"site file {site}")
    assert c.spec_options() == {"account": "my-acct", "queue": "regular", "walltime": "2h"}
    # The environment beats the files, in dask's own convention; a flag beats everything.
    env = {"DASK_DASK_HPC__ACCOUNT": "env-acct", "DASK_DASK_HPC__CORES": "4"}
    c = configured(dirs, environ=env)
    assert c.get("account") == "env-acct" and c.settings["account"].source.startswith("environment ")
    assert c.get("cores") == 4
    c = configured(dirs, {"account": "flag-acct", "queue": None}, environ=env)
    assert (c.get("account"), c.settings["account"].source) == ("flag-acct", "flag")
    assert c.get("queue") == "regular"  # a flag left out (None) is no flag


def test_dask_jobqueues_settings_with_its_meanings(dirs: dict[str, Path]) -> None:
    """A dask-jobqueue user's jobqueue.yaml (the values its docs show) applies to its system,
    below dask-hpc's own files; what dask-hpc does not use is listed, not dropped silently."""
    jobqueue = write(
        dirs["user"],
        "jobqueue.yaml",
        {
            "jobqueue": {
                "slurm": {
                    "name": "dask-worker",
                    "cores": 36,
                    "memory": "100 GB",
                    "processes": None,
                    "walltime": "00:30:00",
                    "queue": "regular",
                    "project": "abc123",
                    "job-extra-directives": ["--exclusive"],
                    "python": "/opt/conda/bin/python",
                    "job-script-prologue": [],
                    "death-timeout": 60,  # dask-jobqueue's own default: not the user's choice
                    "worker-extra-args": ["--lifetime", "55m"],
                    "scheduler-options": {"dashboard_address": ":8788"},
                    "worker-class": "dask_cuda.CUDAWorker",  # not dask-jobqueue 0.9.0's: listed
                },
                "pbs": {"queue": "economy", "account": "P123"},
                "htcondor": {"job-extra-directives": {"+ProjectName": '"x"'}},
            }
        },
    )
    c = configured(dirs, {"system": "slurm"})
    where = f"jobqueue.yaml {jobqueue}"
    assert c.settings["cores"].value == 36
    assert c.settings["cores"].source == f"{where} (jobqueue.slurm.cores)"
    assert (c.get("account"), c.get("job-name"), c.get("walltime")) == ("abc123", "dask-worker", "00:30:00")
    assert c.get("job-extra-directives") == ["--exclusive"]
    assert c.get("python") == "/opt/conda/bin/python"
    assert c.get("worker-extra-args") == ["--lifetime", "55m"]
    assert "death-timeout" not in c.settings or c.settings["death-timeout"].source == "default"
    # The cluster classes' own keys are kept for them (dask_hpc.jobqueue), the rest listed.
    assert c.jobqueue_cluster["scheduler-options"].value == {"dashboard_address": ":8788"}
    assert c.unused == [f"jobqueue.slurm.worker-class = 'dask_cuda.CUDAWorker' ({where})"]
    # Another system reads its own section; torque reads PBS's, as dask-jobqueue's PBSCluster.
    assert configured(dirs, {"system": "torque"}).get("queue") == "economy"
    assert configured(dirs, {"system": "sge"}).get("queue") is None
    # HTCondor's extra directives are a mapping there, as in dask-jobqueue's docs.
    assert configured(dirs, {"system": "htcondor"}).get("job-extra-directives") == {"+ProjectName": '"x"'}
    # dask-hpc's own files come first; DASK_JOBQUEUE__* is dask-jobqueue's environment.
    write(dirs["site"], "dask-hpc.yaml", {"dask-hpc": {"cores": 8}})
    assert configured(dirs, {"system": "slurm"}).get("cores") == 8
    c = configured(dirs, {"system": "pbs"}, environ={"DASK_JOBQUEUE__PBS__QUEUE": "develop"})
    assert c.get("queue") == "develop" and "DASK_JOBQUEUE__PBS__QUEUE" in c.settings["queue"].source


def test_a_site_profile_is_chosen_by_the_host_name(dirs: dict[str, Path]) -> None:
    site = {
        "dask-hpc": {
            "profiles": {
                "derecho": {"match": "derecho*", "system": "pbs", "interface": "hsn0", "queue": "main"},
                "casper": {"match": "casper*", "system": "pbs", "queue": "casper"},
            }
        }
    }
    write(dirs["site"], "site.yaml", site)
    c = configured(dirs, host="derecho5")
    assert (c.profile, c.system, c.get("interface"), c.get("queue")) == ("derecho", "pbs", "hsn0", "main")
    assert c.settings["system"].source == "profile derecho"
    assert configured(dirs, host="laptop").profile is None
    # A user's own value beats the profile's; a profile can be chosen by name.
    write(dirs["user"], "dask-hpc.yaml", {"dask-hpc": {"queue": "develop", "profile": "casper"}})
    c = configured(dirs, host="derecho5")
    assert (c.profile, c.get("queue")) == ("casper", "develop")


@pytest.mark.parametrize(
    ("files", "environ", "host", "says"),
    [
        (  # a key nobody knows (a typo): the file, the key, the value, the known ones
            {"user/dask-hpc.yaml": {"dask-hpc": {"acount": "x"}}},
            {},
            "login1",
            r"user file .*/dask-hpc.yaml: unknown setting dask-hpc.acount \('x'\); known: cores, ",
        ),
        (  # a value of the wrong form: where, the key, the value, what is accepted, the fix
            {"site/dask-hpc.yaml": {"dask-hpc": {"cores": "many"}}},
            {},
            "login1",
            r"site file .*/dask-hpc.yaml: cores 'many': .*; fix it there, or give the option yourself",
        ),
        (  # fine alone, not together: more processes than the configured cores
            {"site/a.yaml": {"dask-hpc": {"cores": 4}}, "user/b.yaml": {"dask-hpc": {"processes": 8}}},
            {},
            "login1",
            r"user file .*b.yaml: processes 8: must be a whole number from 1 to cores \(4\)",
        ),
        (
            {"site/dask-hpc.yaml": {"dask-hpc": {"walltime": "soon"}}},
            {},
            "login1",
            r"site file .*: walltime 'soon': ",
        ),
        (
            {"user/jobqueue.yaml": {"jobqueue": {"local": {"memory": "lots"}}}},
            {},
            "login1",
            r"jobqueue.yaml .*/jobqueue.yaml \(jobqueue.local.memory\): memory 'lots': ",
        ),
        (
            {"user/x.yaml": {"dask-hpc": {"job-script-prologue": [1, 2]}}},
            {},
            "login1",
            r"job-script-prologue \[1, 2\]: a list of lines",
        ),
        (
            {"user/x.yaml": {"dask-hpc": {"system": "loadleveler"}}},
            {},
            "login1",
            r"user file .*: system 'loadleveler' is not a batch system we know: one of slurm, ",
        ),
        (
            {},
            {"DASK_DASK_HPC__SUBMIT_FROM": "anywhere"},
            "login1",
            r"^environment DASK_DASK_HPC__SUBMIT_FROM: ",
        ),
        (  # a profile named but missing
            {"user/x.yaml": {"dask-hpc": {"profile": "derecho"}}},
            {},
            "login1",
            r"user file .*: profile 'derecho' is not defined .*; profiles: none",
        ),
        (  # two profiles fit this host: which one is meant?
            {"site/x.yaml": {"dask-hpc": {"profiles": {"a": {"match": "n*"}, "b": {"match": "*1"}}}}},
            {},
            "n1",
            r"profiles a, b all match this host \(n1\)",
        ),
        ({"site/x.yaml": {"dask-hpc": ["not", "a", "mapping"]}}, {}, "login1", r"dask-hpc must be a mapping"),
    ],
)
def test_bad_configuration_is_one_line(
    dirs: dict[str, Path], files: dict[str, object], environ: dict[str, str], host: str, says: str
) -> None:
    for name, data in files.items():
        where, _, filename = name.partition("/")
        write(dirs[where], filename, data)
    with pytest.raises(ConfigError, match=says) as raised:
        configured(dirs, environ=environ, host=host)
    assert "\n" not in str(raised.value)


def test_a_flag_that_clashes_with_a_configured_value_is_the_flags_business(dirs: dict[str, Path]) -> None:
    """processes: 4 configured, --cores 8 given: fine; --cores 2 given: the command says it,
    as for any flag (JobSpec's own line), not as a configuration error."""
    write(dirs["user"], "dask-hpc.yaml", {"dask-hpc": {"processes": 4}})
    assert configured(dirs, {"cores": 8}).spec_options() == {"cores": 8, "processes": 4}
    assert configured(dirs, {"cores": 2}).spec_options() == {"cores": 2, "processes": 4}
    # Without a flag, the configuration alone does not fit: its error.
    with pytest.raises(
        ConfigError, match=r"user file .*: processes 4: must be a whole number from 1 to cores \(1\)"
    ):
        configured(dirs)


def test_a_file_that_is_not_yaml_is_one_line(dirs: dict[str, Path]) -> None:
    (dirs["site"] / "broken.yaml").write_text("dask-hpc: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not YAML \(.*\); fix it or move it away"):
        configured(dirs)


# ---- the commands ---------------------------------------------------------------------------


def dask_hpc(dirs: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, reading the test's site and user directories."""
    env = {**os.environ, "DASK_ROOT_CONFIG": str(dirs["site"]), "DASK_CONFIG": str(dirs["user"])}
    return subprocess.run(
        [sys.executable, "-m", "dask_hpc", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_commands_need_no_flag_where_the_site_configured_them(dirs: dict[str, Path]) -> None:
    site = write(
        dirs["site"],
        "dask-hpc.yaml",
        {"dask-hpc": {"system": "slurm", "queue": "regular", "job-script-prologue": ["module load conda"]}},
    )
    write(dirs["user"], "jobqueue.yaml", {"jobqueue": {"slurm": {"cores": 8, "project": "abc123"}}})
    out = dask_hpc(dirs, "script")
    assert out.returncode == 0, out.stderr
    for line in ("#SBATCH --partition=regular", "#SBATCH --account=abc123", "#SBATCH --cpus-per-task=8"):
        assert line in out.stdout.splitlines(), out.stdout
    assert "module load conda" in out.stdout
    # A flag still wins.
    assert "#SBATCH --partition=debug" in dask_hpc(dirs, "script", "--queue", "debug").stdout
    # dask-hpc config says each value and where it came from.
    shown = dask_hpc(dirs, "config", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["system"] == "slurm"
    assert data["settings"]["queue"] == {"value": "regular", "source": f"site file {site}"}
    assert data["settings"]["cores"]["source"].endswith("(jobqueue.slurm.cores)")
    assert data["settings"]["memory"]["source"] == "default"
    table = dask_hpc(dirs, "config", "--system", "pbs")
    assert table.returncode == 0 and "dask-hpc configuration for pbs" in table.stdout


def test_a_flag_replaces_a_bad_configured_value_and_dask_hpc_is_read_as_dask_reads_it(
    dirs: dict[str, Path],
) -> None:
    """The line says "or give the option yourself": a flag does replace a bad value (it is not
    even checked then). And dask_hpc: (as the package is named) is the same section as
    dask-hpc:, as dask's own config reads it (it was silently ignored)."""
    write(dirs["user"], "dask-hpc.yaml", {"dask-hpc": {"cores": "many", "memory": "lots"}})
    assert dask_hpc(dirs, "script").returncode == 2
    out = dask_hpc(dirs, "script", "--cores", "2", "--memory", "4GB")
    assert out.returncode == 0, out.stderr
    assert "#LOCAL --cores=2" in out.stdout.splitlines() or "--nthreads 2" in out.stdout
    write(dirs["user"], "dask-hpc.yaml", {"dask_hpc": {"system": "slurm", "cores": 7}})
    c = configured(dirs)
    assert (c.system, c.get("cores")) == ("slurm", 7)
    write(dirs["user"], "dask-hpc.yaml", {"dask_hpc": {"cores": 7}, "dask-hpc": {"cores": 8}})
    with pytest.raises(ConfigError, match="both dask-hpc and dask_hpc sections; keep one"):
        configured(dirs)


def test_bad_configuration_stops_a_command_with_one_line_and_exit_2(dirs: dict[str, Path]) -> None:
    write(dirs["user"], "dask-hpc.yaml", {"dask-hpc": {"acount": "abc123"}})
    for args in (["script"], ["config"], ["up", "--name", "never"]):
        out = dask_hpc(dirs, *args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.startswith("error: user file ") and "unknown setting dask-hpc.acount" in out.stderr


def test_the_state_dir_from_a_site_file(dirs: dict[str, Path], tmp_path: Path) -> None:
    """``state-dir: /work/$USER/dask-hpc``: sessions live there ($VAR expanded for the user)."""
    write(dirs["site"], "dask-hpc.yaml", {"dask-hpc": {"state-dir": str(tmp_path / "work" / "$WHO" / "s")}})
    env = {k: v for k, v in os.environ.items() if k != "DASK_HPC_SESSIONS"}
    env.update(DASK_ROOT_CONFIG=str(dirs["site"]), DASK_CONFIG=str(dirs["user"]), WHO="alice")
    code = "from dask_hpc.state.session import sessions_root; print(sessions_root())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / "work" / "alice" / "s")


def test_a_dask_jobqueue_lsf_walltime_means_what_bsub_reads(dirs: dict[str, Path]) -> None:
    """jobqueue.lsf.walltime '00:30' (dask-jobqueue's docs: HH:MM, as bsub -W): 30 minutes,
    not 30 seconds; a flag of two fields too. SLURM reads two fields as MM:SS."""
    write(dirs["user"], "jobqueue.yaml", {"jobqueue": {"lsf": {"walltime": "00:30"}}})
    out = dask_hpc(dirs, "script", "--system", "lsf")
    assert out.returncode == 0, out.stderr
    assert "#BSUB -W 00:30" in out.stdout.splitlines()
    assert "#BSUB -W 01:30" in dask_hpc(dirs, "script", "--system", "lsf", "--walltime", "01:30").stdout
    slurm = dask_hpc(dirs, "script", "--system", "slurm", "--walltime", "30:00").stdout
    assert "#SBATCH --time=00:30:00" in slurm.splitlines(), slurm


def test_a_sites_grid_engine_parallel_environment(dirs: dict[str, Path], tmp_path: Path) -> None:
    """sge-parallel-environment in a site file: jobs of several cores ask for it; without
    one, such a job is refused in one line that says how (no "smp" assumed)."""
    refused = dask_hpc(dirs, "script", "--system", "sge", "--cores", "4")
    assert refused.returncode == 1 and "set sge-parallel-environment" in refused.stderr, refused.stderr
    write(dirs["site"], "dask-hpc.yaml", {"dask-hpc": {"sge-parallel-environment": "mpi"}})
    out = dask_hpc(dirs, "script", "--system", "sge", "--cores", "4")
    assert out.returncode == 0, out.stderr
    assert "#$ -pe mpi 4" in out.stdout.splitlines()
    # A session keeps it, so that its keeper (in the scheduler's job) renders as up did.
    from dask_hpc.keeper.plugin import Keeper
    from dask_hpc.network import InterfaceChoice
    from dask_hpc.spec import JobSpec
    from dask_hpc.state.session import Session, SessionConfig

    session = Session("pe", root=tmp_path / "sessions")
    session.prepare()
    config = SessionConfig(
        "pe", "sge", JobSpec(cores=4), JobSpec(), system_settings={"sge-parallel-environment": "mpi"}
    )
    session.write_config(config)
    keeper = Keeper(session, session.read_config(), InterfaceChoice("lo", "127.0.0.1", "test"))
    assert "#$ -pe mpi 4" in keeper.job_script(config.spec).splitlines()
