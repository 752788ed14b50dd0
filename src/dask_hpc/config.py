"""dask-hpc's configuration: defaults for the commands and ``BatchCluster``, kept where a user
and a site keep dask's, each value with where it came from (``dask-hpc config`` shows them).

Sources, the first that has a value wins:

1. a flag of the command (a keyword of ``BatchCluster``);
2. the environment: ``DASK_DASK_HPC__<KEY>`` (dask's own convention: ``DASK_``, then the
   dotted key with ``__``; ``DASK_DASK_HPC__ACCOUNT=abc123``);
3. a user file: the ``dask-hpc:`` section of any YAML file in ``~/.config/dask`` (or
   ``$DASK_CONFIG``), e.g. ``~/.config/dask/dask-hpc.yaml``;
4. a site file: the same in ``/etc/dask`` (or ``$DASK_ROOT_CONFIG``) and
   ``{sys.prefix}/etc/dask``;
5. dask-jobqueue's settings for the system: ``jobqueue.<system>.*`` from the same files
   (``jobqueue.yaml``) and ``DASK_JOBQUEUE__*``, read with dask-jobqueue's meanings
   (``name`` is the job name, ``job-script-prologue`` the prologue, ...);
6. the site profile chosen by this host's name: ``dask-hpc.profiles.<name>`` with a ``match``
   pattern (``derecho*``), or the one ``dask-hpc.profile`` names;
7. dask-hpc's default.

These are the directories dask itself reads its configuration from (``dask.config.paths``).
A key nobody knows, a value of the wrong form, or a profile named but missing is a
:class:`~dask_hpc.errors.ConfigError`: one line naming the file (or variable), the key, the
value and the fix; never a silent default.
"""

from __future__ import annotations

import fnmatch
import os
import socket
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dask_hpc.errors import ConfigError, SpecError
from dask_hpc.spec import JobSpec
from dask_hpc.systems import SYSTEMS

__all__ = ["KEYS", "Configuration", "Setting", "config_directories", "flags", "resolve", "walltime_as_read"]

#: dask-hpc's keys: for each, the JobSpec option it sets (None: a setting of our own).
SPEC_KEYS: dict[str, str] = {
    "cores": "cores",
    "memory": "memory",
    "processes": "processes",
    "nodes": "nodes",
    "gpus": "gpus",
    "walltime": "walltime",
    "queue": "queue",
    "account": "account",
    "job-name": "job_name",
    "job-extra-directives": "job_extra_directives",
    "job-script-prologue": "job_script_prologue",
    "job-directives-skip": "job_directives_skip",
    "environment": "environment",
    "log-directory": "log_directory",
    "job-script-epilogue": "job_script_epilogue",
    "shebang": "shebang",
    "worker-extra-args": "worker_extra_args",
    "local-directory": "local_directory",
    "death-timeout": "death_timeout",
    "nanny": "nanny",
    "python": "python",
    "worker-command": "worker_command",
    "worker-class": "worker_class",
}
#: Our own settings, and the form each takes.
OWN_KEYS: dict[str, str] = {
    "system": f"one of {', '.join(SYSTEMS)}",
    "interface": "a network interface's name, such as ib0",
    "login-host": "[user@]host",
    "submit-from": "auto, client or scheduler",
    "state-dir": "a directory the nodes share",
    "retire-margin": "seconds, or a time such as 2min",
    "mpi-buffer-pool": "a size such as 1GiB",
    "sge-parallel-environment": "the Grid Engine parallel environment for jobs of several cores "
    "(qconf -spl lists them)",
    "sge-gpu-resource": "Grid Engine: the site's consumable of GPUs that --gpus asks for, "
    "e.g. gpu (qconf -sc lists them)",
    # The batch systems' own (dask-jobqueue's names), each read by the systems named:
    "resource-spec": "PBS, Grid Engine and OAR: the -l line of a job's resources, e.g. "
    "select=1:ncpus=36:mem=100GB (OAR: /nodes=1/core=16)",
    "job-cpu": "SLURM: --cpus-per-task, when it differs from the cores",
    "job-mem": "SLURM: --mem as sbatch reads it, e.g. 16G, when it differs from the memory",
    "array-throttle": "SLURM: at most this many tasks of an array run at once (--array=1-N%K)",
    "ncpus": "LSF: -n, when it differs from the cores",
    "mem": "LSF: the memory asked of LSF, bytes or a size such as 25GB",
    "lsf-units": "LSF: the unit memory is written in: kb, mb, gb or tb",
    "lsf-use-stdin": "LSF: true (bsub < script) or false (bsub script)",
    "disk": "HTCondor: disk per job, a size such as 1GB",
    "memory-per-core-property-name": "OAR: the resources' property of MiB per core that -p asks "
    "for (oarnodes lists them, e.g. memcore), or not_applicable",
    "submit-command-extra": "HTCondor: arguments added to condor_submit, e.g. [-name, schedd01]",
    "cancel-command-extra": "HTCondor: arguments added to condor_rm",
}
KEYS = (*SPEC_KEYS, *OWN_KEYS)
#: The keys that are a batch system's settings (``BatchSystem.setting_keys``).
SYSTEM_KEYS = {key for kind in SYSTEMS.values() for key in kind.setting_keys}
#: The keywords (and the flags' option names) that set a batch system's settings.
SETTING_KEYWORDS = {
    "resource_spec": "resource-spec",
    "job_cpu": "job-cpu",
    "job_mem": "job-mem",
    "ncpus": "ncpus",
    "mem": "mem",
    "lsf_units": "lsf-units",
    "use_stdin": "lsf-use-stdin",
    "disk": "disk",
    "submit_command_extra": "submit-command-extra",
    "cancel_command_extra": "cancel-command-extra",
    "memory_per_core_property_name": "memory-per-core-property-name",
    "array_throttle": "array-throttle",
}
#: Config keys by JobSpec option name (``job_name`` -> ``job-name``).
OPTION_KEYS = {option: key for key, option in SPEC_KEYS.items()}


def flags(options: Mapping[str, Any]) -> dict[str, Any]:
    """Job options given as flags or keywords (JobSpec names), by config key, for :func:`resolve`:
    a value given there wins, and the configured one it replaces is not even checked."""
    return {OPTION_KEYS[k]: v for k, v in options.items() if k in OPTION_KEYS}


#: Keys of the config section that are not settings.
_STRUCTURE = ("profiles", "profile")
_LISTS = ("job-extra-directives", "job-script-prologue", "job-directives-skip")

#: dask-jobqueue's keys (jobqueue.<system>.<key>) that mean what one of ours means.
JOBQUEUE_KEYS: dict[str, str] = {
    # Where dask-jobqueue's name is ours (its job options share our names, as the flags do):
    # (worker-class is dask-mpi's and ours, not dask-jobqueue 0.9's: a jobqueue section's is unused.)
    **{key: key for key in SPEC_KEYS if key not in ("job-name", "environment", "worker-class")},
    "interface": "interface",
    # Where it is not:
    "project": "account",  # LSF and SGE call the account a project
    "name": "job-name",
    "job-extra": "job-extra-directives",  # dask-jobqueue's deprecated names
    "env-extra": "job-script-prologue",
    "header-skip": "job-directives-skip",
    "extra": "worker-extra-args",  # (a deprecated name, as those above: JOBQUEUE_RENAMED)
    "use-stdin": "lsf-use-stdin",
    # The systems' own keys are dask-jobqueue's names (its sections are per system):
    **{key: key for key in ("resource-spec", "job-cpu", "job-mem", "ncpus", "mem", "lsf-units", "disk")},
    **{key: key for key in ("submit-command-extra", "cancel-command-extra", "memory-per-core-property-name")},
}
#: dask-jobqueue's deprecated names and their new ones (project: for SLURM and PBS, where it
#: became account; SGE and LSF call the account a project).
JOBQUEUE_RENAMED = {
    "project": "account",
    "job-extra": "job-extra-directives",
    "env-extra": "job-script-prologue",
    "header-skip": "job-directives-skip",
    "extra": "worker-extra-args",
}
#: dask-jobqueue's keys that only its cluster classes read (dask_hpc.jobqueue: the drop-in).
JOBQUEUE_CLUSTER_KEYS = ("scheduler-options", "shared-temp-directory")
#: Values of dask-jobqueue's own default jobqueue.yaml (which it writes to ~/.config/dask
#: when imported) that mean what dask-hpc's defaults mean: not a choice of the user's, so
#: neither listed as used nor shown as the source of a value.
JOBQUEUE_DEFAULTS: set[tuple[str, Any]] = {
    ("death-timeout", 60),
    ("worker-command", "distributed.cli.dask_worker"),
    ("shebang", "#!/usr/bin/env bash"),
    ("shebang", "#!/usr/bin/env condor_submit"),  # HTCondor's
    ("use-stdin", True),  # LSF's
    ("name", "dask-worker"),
}
#: The section of jobqueue.yaml each system reads (dask-jobqueue's config_name).
JOBQUEUE_SECTION = {"torque": "pbs"}


@dataclass(frozen=True)
class Setting:
    """One resolved value and where it came from (``"user file ~/.config/dask/dask-hpc.yaml"``)."""

    key: str
    value: Any
    source: str


@dataclass(frozen=True)
class Configuration:
    """Every resolved setting for one system, the profile chosen, and the jobqueue.yaml
    values that dask-hpc does not use (said, not silently dropped)."""

    system: str
    settings: dict[str, Setting]
    profile: str | None = None
    unused: list[str] = field(default_factory=list)
    #: jobqueue.yaml values that only dask-jobqueue's cluster classes read (scheduler-options,
    #: shared-temp-directory), for dask_hpc.jobqueue's.
    jobqueue_cluster: dict[str, Setting] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        setting = self.settings.get(key)
        return default if setting is None else setting.value

    def system_settings(self) -> dict[str, Any]:
        """The batch systems' site settings (``get_system(name, settings)``)."""
        return {k: s.value for k, s in self.settings.items() if k in SYSTEM_KEYS}

    def spec_options(self) -> dict[str, Any]:
        """The JobSpec options set by any source but the default (JobSpec has those)."""
        return {
            SPEC_KEYS[k]: s.value
            for k, s in self.settings.items()
            if k in SPEC_KEYS and s.source != "default"
        }


def config_directories(environ: Mapping[str, str] | None = None) -> list[tuple[str, Path]]:
    """Where dask reads configuration files, lowest precedence first, each as ``site`` or ``user``."""
    env = os.environ if environ is None else environ
    site = Path(env.get("DASK_ROOT_CONFIG") or "/etc/dask")
    user = Path(env["DASK_CONFIG"]) if env.get("DASK_CONFIG") else Path("~/.config/dask").expanduser()
    return [("site", site), ("site", Path(sys.prefix) / "etc" / "dask"), ("user", user)]


def resolve(
    given: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    directories: Sequence[tuple[str, Path]] | None = None,
    host: str | None = None,
    only: Sequence[str] | None = None,
    config_name: str | None = None,
) -> Configuration:
    """The settings for ``given`` (flags, by config key: ``{"system": "slurm", "cores": 4}``;
    None for flags not given). ``only``: resolve and check just these keys (where one setting
    is needed, such as the state dir, a bad value of another must not stop the command).
    ``config_name``: the section of jobqueue.yaml to read (dask-jobqueue's ``config_name``;
    the system's own by default).

    Raises:
        ConfigError: a bad file, key or value in any source (one line: where, what, the fix).
    """
    env = dict(os.environ if environ is None else environ)
    files = _read_files(config_directories(env) if directories is None else directories)
    flags = {k: v for k, v in (given or {}).items() if v not in (None, (), "")}
    unknown_flags = sorted(set(flags) - set(KEYS) - {"profile"})
    if unknown_flags:
        raise ConfigError(f"unknown setting {', '.join(unknown_flags)}; known: {', '.join(KEYS)}")

    # dask-hpc's own layers, highest first: the environment, user files, site files.
    layers: list[tuple[str, dict[str, Any]]] = []
    environment = _environment_section(env, "dask-hpc")
    if environment:
        layers.append(environment)
    for kind in ("user", "site"):
        for path, data in reversed([(p, d) for k, p, d in files if k == kind]):
            section = _section(data, "dask-hpc", path)
            if section:
                layers.append((f"{kind} file {path}", section))
    for where, section in layers:
        _check_keys(section, where, allowed=(*KEYS, *_STRUCTURE))

    profile_name, profile = _choose_profile(flags, layers, files, host or socket.gethostname())
    system_setting = _first("system", flags, layers, profile, profile_name) or Setting(
        "system", "local", "default"
    )
    system = str(system_setting.value)
    wanted = set(KEYS if only is None else only)
    if system_setting.source != "flag" and "system" in wanted:  # a flag is checked where it is used
        _check_value("system", system, system_setting.source)

    jobqueue, unused, jobqueue_cluster = _jobqueue(system, files, env, config_name)
    settings: dict[str, Setting] = {"system": system_setting}
    defaults = JobSpec()
    for key in KEYS:
        if key == "system" or key not in wanted:
            continue
        # dask-hpc's own sources, then the user's (or site's) jobqueue.yaml, then the site profile.
        found = (
            _first(key, flags, layers, None, None)
            or jobqueue.get(key)
            or _first(key, {}, [], profile, profile_name)
        )
        if found is None:
            default = getattr(defaults, SPEC_KEYS[key]) if key in SPEC_KEYS else None
            if default in (None, ()):
                continue
            found = Setting(key, default, "default")
        elif found.source != "flag":
            _check_value(key, found.value, found.source, system)
        settings[key] = found
    configuration = Configuration(system, settings, profile_name, unused, jobqueue_cluster)
    if only is None:
        _check_together(configuration)
    return configuration


def _check_together(configuration: Configuration) -> None:
    """Configured values that are fine alone but not together (processes above cores). A
    clash that a flag makes is left to the command, which says it as for any flag."""
    chosen = {k: s for k, s in configuration.settings.items() if k in SPEC_KEYS}
    try:
        JobSpec.from_options(
            {SPEC_KEYS[k]: s.value for k, s in chosen.items()},
            walltime_fields=_walltime_fields(configuration.system),
        )
        return
    except SpecError as exc:
        error = exc
    key = next((k for k in chosen if SPEC_KEYS[k] == error.field), None)
    if key is None or any(s.source == "flag" for s in chosen.values()) or chosen[key].source == "default":
        return  # with a flag in the clash, the command says it as for any flag
    source = chosen[key].source
    raise ConfigError(
        f"{source}: {key} {chosen[key].value!r}: {error.accepted}; fix it there, "
        "or give the option yourself (a flag or keyword wins)"
    )


# ---- reading ----------------------------------------------------------------------------


def _read_files(directories: Sequence[tuple[str, Path]]) -> list[tuple[str, Path, Any]]:
    """Every YAML file of the directories, as dask reads them (``*.yaml``, ``*.yml``, ``*.json``),
    in name order: (site or user, path, its data)."""
    import yaml

    out = []
    for kind, directory in directories:
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
                continue
            try:
                data = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(
                    f"{path}: not YAML ({_yaml_problem(exc)}); fix it or move it away"
                ) from None
            out.append((kind, path, data))
    return out


def _yaml_problem(exc: Exception) -> str:
    """What YAML found wrong, and the line: ``expected ',' or ']' (line 2)``."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None:
        return " ".join(str(exc).split())
    return f"{problem}" + (f", line {mark.line + 1}" if mark is not None else "")


def _section(data: Any, name: str, where: Path | str) -> dict[str, Any]:
    """The ``name`` section of a file's data (``dask-hpc`` or ``dask_hpc``: dask reads both
    alike), keys with ``_`` read as ``-``."""
    if not isinstance(data, dict):
        return {}
    spellings = [k for k in dict.fromkeys((name, name.replace("-", "_"))) if data.get(k) is not None]
    if not spellings:
        return {}
    if len(spellings) > 1:
        raise ConfigError(f"{where}: both {name} and {spellings[1]} sections; keep one")
    section = data[spellings[0]]
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: {name} must be a mapping of settings, not {section!r}")
    return {str(k).replace("_", "-"): v for k, v in section.items()}


def _environment_section(env: Mapping[str, str], name: str) -> tuple[str, dict[str, Any]] | None:
    """``DASK_<NAME>__<KEY>`` variables, as dask reads them (values parsed as Python literals)."""
    import dask.config

    prefix = "DASK_" + name.upper().replace("-", "_") + "__"
    ours = {k: v for k, v in env.items() if k.startswith(prefix)}
    if not ours:
        return None
    parsed = dask.config.collect_env(ours)
    section: dict[str, Any] = next(iter(parsed.values()), {})
    names = ", ".join(sorted(ours))
    return f"environment {names}", {str(k).replace("_", "-"): v for k, v in section.items()}


def _check_keys(section: Mapping[str, Any], where: str, allowed: Sequence[str]) -> None:
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        value = section[unknown[0]]
        raise ConfigError(
            f"{where}: unknown setting dask-hpc.{unknown[0]} ({value!r}); known: {', '.join(allowed)}"
        )


def _first(
    key: str,
    flags: Mapping[str, Any],
    layers: Sequence[tuple[str, Mapping[str, Any]]],
    profile: Mapping[str, Any] | None,
    profile_name: str | None,
) -> Setting | None:
    if key in flags:
        return Setting(key, flags[key], "flag")
    for where, section in layers:
        if section.get(key) is not None:
            return Setting(key, section[key], where)
    if profile and profile.get(key) is not None:
        return Setting(key, profile[key], f"profile {profile_name}")
    return None


def _choose_profile(
    flags: Mapping[str, Any],
    layers: Sequence[tuple[str, Mapping[str, Any]]],
    files: Sequence[tuple[str, Path, Any]],
    host: str,
) -> tuple[str | None, dict[str, Any] | None]:
    """The site profile: the one named (flag, environment, files), else the one whose
    ``match`` fits ``host``; two that fit are an error (which one is meant?)."""
    profiles: dict[str, tuple[Path, dict[str, Any]]] = {}
    for _, path, data in files:  # lowest first: a later file's profile of the same name wins
        for name, profile in (_section(data, "dask-hpc", path).get("profiles") or {}).items():
            if not isinstance(profile, dict):
                raise ConfigError(f"{path}: dask-hpc.profiles.{name} must be a mapping, not {profile!r}")
            profile = {str(k).replace("_", "-"): v for k, v in profile.items()}
            _check_keys(profile, f"{path}: profile {name}", allowed=(*KEYS, "match"))
            profiles[str(name)] = (path, profile)
    named = flags.get("profile")
    where = "flag"
    if named is None:
        for layer_where, section in layers:
            if section.get("profile") is not None:
                named, where = section["profile"], layer_where
                break
    if named is not None:
        if str(named) not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(
                f"{where}: profile {named!r} is not defined (dask-hpc.profiles in the site or user "
                f"files); profiles: {known}"
            )
        return str(named), profiles[str(named)][1]
    fits = [
        n for n, (_, p) in sorted(profiles.items()) if p.get("match") and fnmatch.fnmatch(host, p["match"])
    ]
    if len(fits) > 1:
        raise ConfigError(
            f"profiles {', '.join(fits)} all match this host ({host}); make their match patterns "
            "narrower, or choose one with dask-hpc.profile"
        )
    return (fits[0], profiles[fits[0]][1]) if fits else (None, None)


def _jobqueue(
    system: str, files: Sequence[tuple[str, Path, Any]], env: Mapping[str, str], config_name: str | None
) -> tuple[dict[str, Setting], list[str], dict[str, Setting]]:
    """dask-jobqueue's settings for ``system`` (its section ``config_name``, else the
    system's), by our keys; those we do not use; those only its cluster classes read.

    Read as dask-jobqueue reads them (``dask.config.get``): ``dask.config.set`` in this
    process first, then ``DASK_JOBQUEUE__*``, then the files; a deprecated name only where
    its new name has no value, with dask-jobqueue's FutureWarning.
    """
    section_name = config_name or JOBQUEUE_SECTION.get(system, system)
    layers: list[tuple[str, dict[str, Any]]] = []
    environment = _environment_section(env, "jobqueue")
    if environment:
        where, data = environment
        layers.append((where, {str(k): v for k, v in (data.get(section_name) or {}).items()}))
    for kind in ("user", "site"):
        for path, data in reversed([(p, d) for k, p, d in files if k == kind]):
            jobqueue = _section(data, "jobqueue", path)
            section = jobqueue.get(section_name)
            if isinstance(section, dict):
                layers.append(
                    (f"jobqueue.yaml {path}", {str(k).replace("_", "-"): v for k, v in section.items()})
                )
    in_process = _set_in_process(f"jobqueue.{section_name}", layers)
    if in_process:
        layers.insert(0, ("dask.config.set in this process", in_process))
    own_section = JOBQUEUE_SECTION.get(system, system)
    if (
        config_name not in (None, own_section)
        and not layers
        and not _set_in_process(f"jobqueue.{config_name}", [], everything=True)
    ):
        raise ConfigError(
            f"config_name {config_name!r}: no jobqueue.{config_name} section in jobqueue.yaml, "
            f"DASK_JOBQUEUE__* or dask.config; sections: {', '.join(_jobqueue_sections(files)) or 'none'}"
        )
    renamed = {
        k: v for k, v in JOBQUEUE_RENAMED.items() if not (k == "project" and system not in ("slurm", "pbs"))
    }
    found: dict[str, Setting] = {}
    old: dict[str, tuple[str, Setting]] = {}
    unused: list[str] = []
    cluster: dict[str, Setting] = {}
    for where, section in reversed(layers):  # lowest first, so that higher ones overwrite
        for key, value in section.items():
            if value in (None, [], {}, "") or _is_jobqueue_default(key, value):
                continue
            if key in JOBQUEUE_CLUSTER_KEYS:
                cluster[key] = Setting(key, value, f"{where} (jobqueue.{section_name}.{key})")
                continue
            ours = JOBQUEUE_KEYS.get(key)
            if ours is None:
                unused.append(f"jobqueue.{section_name}.{key} = {value!r} ({where})")
                continue
            if ours == "walltime":
                value = walltime_as_read(system, value)
            setting = Setting(ours, value, f"{where} (jobqueue.{section_name}.{key})")
            if key in renamed:
                old[ours] = (key, setting)
            else:
                found[ours] = setting
    for ours, (key, setting) in old.items():
        warnings.warn(
            f"{setting.source}: {key} has been renamed to {renamed[key]} (dask-jobqueue's "
            f"deprecation); it is used only where {renamed[key]} has no value",
            FutureWarning,
            stacklevel=4,
        )
        found.setdefault(ours, setting)
    return found, unused, cluster


def _set_in_process(
    key: str, layers: Sequence[tuple[str, Mapping[str, Any]]], everything: bool = False
) -> dict[str, Any]:
    """The values of dask's configuration section ``key`` in this process that neither its
    defaults (dask-jobqueue's, loaded on import) nor the files and environment read here gave:
    what ``dask.config.set`` (or a file dask read elsewhere) put there. ``everything``: all of it."""
    import dask.config

    current = dask.config.get(key, default=None)
    if not isinstance(current, Mapping):
        return {}
    current = {str(k).replace("_", "-"): v for k, v in current.items()}
    if everything:
        return current
    defaults = dask.config.get(key, default=None, config=dask.config.merge(*dask.config.defaults))
    defaults = {str(k).replace("_", "-"): v for k, v in (defaults or {}).items()}
    read = {k: v for _, section in layers for k, v in section.items()}
    return {
        k: v
        for k, v in current.items()
        if v not in (None, [], {}, "")
        and not (k in defaults and defaults[k] == v)
        and not (k in read and read[k] == v)
    }


def _jobqueue_sections(files: Sequence[tuple[str, Path, Any]]) -> list[str]:
    names = {str(n) for _, path, data in files for n in _section(data, "jobqueue", path)}
    return sorted(names)


def walltime_as_read(system: str, value: Any) -> Any:
    """A bare number of walltime as the batch system reads it (dask-jobqueue passes it on as
    written): ``90`` for SLURM is ``90m``; for PBS and Grid Engine, ``90s``."""
    kind = SYSTEMS.get(system)
    unit = kind.bare_walltime if kind is not None else None
    bare = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and value.strip().isdigit()
    )
    return f"{str(value).strip()}{unit}" if bare and unit else value


def _is_jobqueue_default(key: str, value: Any) -> bool:
    return not isinstance(value, list | dict) and (key, value) in JOBQUEUE_DEFAULTS


def _walltime_fields(system: str) -> str:
    """How ``system`` reads a walltime of two fields (LSF: HH:MM), for checking values."""
    kind = SYSTEMS.get(system)
    return kind.walltime_fields if kind is not None else "MM:SS"


def _check_value(key: str, value: Any, source: str, system: str = "local") -> None:
    """A configured value of the wrong form is one line naming where it came from."""
    fix = "fix it there, or give the option yourself (a flag or keyword wins)"
    if key == "system":
        if value not in SYSTEMS:
            raise ConfigError(f"{source}: system {value!r} is not a batch system we know: {OWN_KEYS[key]}")
        return
    if key in _LISTS:
        if isinstance(value, str):
            value = [value]
        if key == "job-extra-directives" and isinstance(value, dict):  # HTCondor's, as dask-jobqueue
            value = [f"{k} = {v}" for k, v in value.items()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{source}: {key} {value!r}: a list of lines; {fix}")
    if key in SPEC_KEYS:
        alone = {SPEC_KEYS[key]: value}
        if key == "processes":  # checked alone, beside as many cores; against the cores below
            alone["cores"] = value
        try:
            JobSpec.from_options(alone, walltime_fields=_walltime_fields(system))
        except SpecError as exc:
            raise ConfigError(f"{source}: {key} {value!r}: {exc.accepted}; {fix}") from None
        return
    if key == "submit-from" and value not in ("auto", "client", "scheduler"):
        raise ConfigError(f"{source}: submit-from {value!r}: {OWN_KEYS[key]}; {fix}")
    if key in ("interface", "login-host", "state-dir") and not isinstance(value, str):
        raise ConfigError(f"{source}: {key} {value!r}: {OWN_KEYS[key]}; {fix}")
    if key in SYSTEM_KEYS:
        from dask_hpc.systems import get_system

        kinds = [name for name, kind in SYSTEMS.items() if key in kind.setting_keys]
        try:
            get_system(system if system in kinds else kinds[0], {key: value})
        except SpecError as exc:
            raise ConfigError(f"{source}: {key} {value!r}: {exc.accepted}; {fix}") from None
