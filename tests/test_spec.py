from datetime import timedelta
from pathlib import Path

import pytest

from dask_hpc import JobSpec
from dask_hpc.errors import SpecError, UnknownOptionError
from dask_hpc.spec import format_walltime, parse_memory, parse_walltime


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("01:30:00", 5400),
        ("1:30:00", 5400),
        ("30:00", 1800),  # MM:SS
        ("2-00:00:00", 172800),
        ("1-12", 129600),  # D-HH, as SLURM
        ("1-12:30", 131400),
        ("90m", 5400),
        ("1h30m", 5400),
        ("2h", 7200),
        ("45s", 45),
        ("1d", 86400),
        ("1.5h", 5400),
        (" 2H ", 7200),
        (120, 120),
        (timedelta(minutes=3), 180),
    ],
)
def test_walltime_forms(text: object, seconds: int) -> None:
    assert parse_walltime(text) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", ["banana", "", "90", "1:70:00", "0s", "00:00:00", "h", "1h30", "-5m", True, None]
)
def test_walltime_refused_with_field_value_and_forms(bad: object) -> None:
    with pytest.raises(SpecError) as info:
        parse_walltime(bad)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("invalid walltime")
    assert "\n" not in message
    assert "90m" in message  # it names accepted forms


def test_two_fields_are_read_as_the_batch_system_reads_them() -> None:
    """sbatch --time, qsub: MM:SS; bsub -W (and dask-jobqueue's LSFCluster): HH:MM."""
    assert parse_walltime("00:30") == 30 and parse_walltime("30:00") == 1800
    assert parse_walltime("00:30", two_fields="HH:MM") == 1800
    assert parse_walltime("1:30", two_fields="HH:MM") == 5400
    assert parse_walltime("1:30:00", two_fields="HH:MM") == 5400  # three fields: one reading
    with pytest.raises(SpecError):
        parse_walltime("1:75", two_fields="HH:MM")
    assert JobSpec.from_options(walltime="00:30", walltime_fields="HH:MM").walltime == 1800
    assert JobSpec().with_options(walltime="00:30", walltime_fields="HH:MM").walltime == 1800


def test_extra_directives_as_a_mapping_keep_their_values() -> None:
    """dask-jobqueue's HTCondorCluster takes job_extra_directives as a dict (its docs:
    {"+ProjectName": '"x"'}): key = value lines of the submit description, values kept."""
    from dask_hpc.systems import get_system

    spec = JobSpec.from_options(job_extra_directives={"+ProjectName": '"x"', "requirements": "Arch == 1"})
    assert spec.job_extra_directives == ('+ProjectName = "x"', "requirements = Arch == 1")
    script = get_system("htcondor").render(spec, ["true"]).splitlines()
    assert '+ProjectName = "x"' in script and "requirements = Arch == 1" in script
    # Elsewhere a mapping would lose its values (iterating it gives its keys): refused.
    for name in ("job_script_prologue", "job_directives_skip"):
        with pytest.raises(SpecError, match="must be a list of strings, not a mapping"):
            JobSpec.from_options(**{name: {"module load x": ""}})


def test_bare_number_walltime_says_why() -> None:
    with pytest.raises(SpecError, match=r"ambiguous.*OAR hours.*90m, 90s or 90h"):
        parse_walltime("90")
    # The newcomer's 0: told to write 0m, then refused for it. Now the one reason.
    with pytest.raises(SpecError, match=r"^invalid walltime '0': must be at least one second; use"):
        parse_walltime("0")
    # A field past its range says which.
    with pytest.raises(SpecError, match=r"'00:70:00': its minutes pass 59; use"):
        parse_walltime("00:70:00")
    with pytest.raises(SpecError, match=r"'1-25:00:00': its hours of a D-HH form pass 23; use"):
        parse_walltime("1-25:00:00")


def test_format_walltime_past_a_day() -> None:
    assert format_walltime(5400) == "01:30:00"
    assert format_walltime(2 * 86400 + 5) == "48:00:05"


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [
        ("8GB", 8 * 10**9),
        ("8GiB", 8 * 2**30),
        ("8000MB", 8 * 10**9),
        ("1.5TB", 15 * 10**11),
        ("512 MiB", 2**29),
    ],
)
def test_memory_forms(text: str, nbytes: int) -> None:
    assert parse_memory(text) == nbytes


@pytest.mark.parametrize("bad", ["banana", "8", "GB", "1KB", "-1GB", "8 G B", "", 12, True])
def test_memory_refused(bad: object) -> None:
    with pytest.raises(SpecError, match=r"^invalid memory .*8GiB"):
        parse_memory(bad)  # type: ignore[arg-type]


def test_spec_from_options_parses_strings() -> None:
    spec = JobSpec.from_options(
        cores="4",
        memory="8GB",
        walltime="90m",
        queue="debug",
        processes=2,
        environment=["A=1", "B=x=y"],
    )
    assert (spec.cores, spec.memory, spec.walltime, spec.queue) == (4, 8 * 10**9, 5400, "debug")
    assert spec.threads_per_process == 2
    assert spec.memory_per_process == 4 * 10**9
    assert spec.environment == (("A", "1"), ("B", "x=y"))


def test_spec_is_frozen() -> None:
    spec = JobSpec()
    with pytest.raises(AttributeError):
        spec.cores = 3  # type: ignore[misc]


def test_unknown_option_lists_known_ones() -> None:
    with pytest.raises(UnknownOptionError) as info:
        JobSpec.from_options(cores=2, partition="x", wall_time="1h")
    message = str(info.value)
    assert message.startswith(
        "unknown options partition, wall_time (did you mean queue or walltime?); "
        "known options: account, cores"
    )
    assert "walltime" in message and "queue" in message


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"cores": 0}, "cores"),
        ({"cores": "four"}, "cores"),
        ({"cores": "2.5"}, "cores"),
        ({"cores": 2, "processes": 3}, "processes"),
        ({"queue": "  "}, "queue"),
        ({"job_name": "a\nb"}, "job_name"),
        ({"environment": ["NOEQUALS"]}, "environment"),
        ({"environment": {"1BAD": "x"}}, "environment"),
        ({"job_extra_directives": ["ok", "two\nlines"]}, "job_extra_directives"),
    ],
)
def test_bad_values_name_their_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as info:
        JobSpec.from_options(options)
    assert info.value.field == field
    assert str(info.value).startswith(f"invalid {field} ")


def test_none_keeps_defaults() -> None:
    assert JobSpec.from_options(cores=None, queue=None) == JobSpec()


def test_with_options_changes_only_what_is_given() -> None:
    spec = JobSpec.from_options(cores=4, queue="a").with_options(walltime="2h")
    assert (spec.cores, spec.queue, spec.walltime) == (4, "a", 7200)


def test_values_are_read_as_the_user_meant_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    spec = JobSpec.from_options(
        log_directory="dask-logs/run1",
        environment=["A='$TMPDIR'", 'B="two words"', "C=it's", "D='"],
    )
    assert spec.log_directory == str(tmp_path / "dask-logs" / "run1")
    assert JobSpec.from_options(log_directory="~/logs").log_directory == str(tmp_path / "home" / "logs")
    # Quotes around the whole value are the shell's (a config file keeps them); others are the value's.
    assert spec.environment == (("A", "$TMPDIR"), ("B", "two words"), ("C", "it's"), ("D", "'"))


def test_job_directives_skip_is_a_list_of_lines() -> None:
    assert JobSpec.from_options(job_directives_skip="--mem").job_directives_skip == ("--mem",)
    with pytest.raises(SpecError, match="job_directives_skip"):
        JobSpec.from_options(job_directives_skip=[""])


def test_env_quotes_are_read_once_where_typed_and_values_survive_the_session_file() -> None:
    """A config line's quotes are the shell's (``A='$X'``); read back from session.json the
    value must not lose another pair, nor a Python value its own quotes."""
    import json

    typed = JobSpec.from_options(environment=["A=\"'a'\""])
    assert typed.environment == (("A", "'a'"),)
    again = JobSpec.from_dict(json.loads(json.dumps(typed.to_dict())))
    assert again == typed
    assert JobSpec.from_options(environment={"B": '"x"'}).environment == (("B", '"x"'),)
