"""The layers of the package are checked (make lint runs lint-imports): a part that imports a
part above it, or click/rich outside the CLI, fails the check. Proven here on a copy of the
package with one such import added, so the contracts cannot silently check nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(src: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}  # the copy, before the installed package
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_package_keeps_its_contracts(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    run = _lint_imports(tmp_path / "src", tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Contracts: 2 kept, 0 broken." in run.stdout, run.stdout


@pytest.mark.parametrize(
    ("module", "line", "says"),
    [
        # systems/ knows no session
        ("systems/base.py", "from dask_hpc.state import session", "systems is not allowed"),
        # the keeper does not reach up into the commands' side
        ("keeper/decisions.py", "from dask_hpc.session import link", "keeper is not allowed"),
        # two parts of one layer do not import each other
        ("web/tunnel.py", "import dask_hpc.keeper.decisions", "web is not allowed"),
        # an import inside a function counts too
        ("errors.py", "def _f() -> None:\n    import dask_hpc.spec", "errors is not allowed"),
        # nothing below cli/ talks to the user
        ("state/ledger.py", "import rich", "dask_hpc.state is not allowed to import rich"),
    ],
)
def test_an_import_against_the_layers_fails_the_check(
    tmp_path: Path, module: str, line: str, says: str
) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / "src" / "dask_hpc" / module
    path.write_text(path.read_text() + "\n" + line + "\n")
    run = _lint_imports(tmp_path / "src", tmp_path)
    assert run.returncode != 0, run.stdout
    assert says in " ".join(run.stdout.split()), run.stdout


def test_every_part_is_in_the_contracts() -> None:
    """A part missing from the layers (or from the parts that must not talk to the user)
    would be checked by nothing: every module and package of dask_hpc is named."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    in_layers = {part.strip() for layer in layers for part in layer.split("|")}
    quiet = next(c for c in contracts if c["type"] == "forbidden")["source_modules"]
    package = ROOT / "src" / "dask_hpc"
    parts = {
        p.stem if p.is_file() else p.name
        for p in package.iterdir()
        if (p.suffix == ".py" and p.stem not in ("__init__", "__main__")) or (p / "__init__.py").exists()
    }
    assert in_layers == parts
    assert {m.removeprefix("dask_hpc.") for m in quiet} == parts - {"cli"}
