"""The preflight (tests/components.py): a missing component is one line naming it and its installer."""

from __future__ import annotations

import pytest

from . import components
from .components import COMPONENTS, Component, require


@pytest.fixture
def broken(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(
        COMPONENTS,
        "broken",
        Component("SLURM", "scripts/local-slurm up", (components._commands("no-such-sbatch-here"),)),
    )
    return "broken"


def test_under_ci_a_missing_component_fails_with_one_line(
    broken: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as info:
        require(broken)
    line = str(info.value)
    assert line == "SLURM is missing or broken (no no-such-sbatch-here); scripts/local-slurm up installs it"
    assert info.value.pytrace is False  # one line, no traceback


def test_elsewhere_it_skips_with_the_same_line(broken: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(
        pytest.skip.Exception, match=r"^SLURM is missing or broken .*local-slurm up installs it$"
    ):
        require(broken)


def test_a_command_that_fails_is_named_with_its_last_words() -> None:
    check = components._runs(
        ["sh", "-c", "echo first >&2; echo 'can not load PMIx library' >&2; exit 1"], "srun"
    )
    assert check() == "srun: can not load PMIx library"


def test_every_installer_is_a_script_of_the_project_or_make() -> None:
    root = components.Path(__file__).resolve().parent.parent
    for component in COMPONENTS.values():
        program = component.installer.split()[0]
        assert program == "make" or (root / program).is_file(), component
