"""The layer contracts (pyproject.toml [tool.importlinter]) hold, catch a forbidden import, and packages form no
import cycle."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(tree / "src"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [str(LINT), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "repo"
    shutil.copytree(
        ROOT / "src" / "loradeck", tree / "src" / "loradeck", ignore=shutil.ignore_patterns("*.pyc", "model", "loras")
    )
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_contracts_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line, broken",
    [
        ("cli/lora.py", "import loradeck.lora.patcher", "Interfaces reach the engine"),  # interface → patcher
        ("server/app.py", "from loradeck.engine import pipeline", "Interfaces reach the engine"),
        ("engine/outputs.py", "import loradeck.services.studio", "Layers"),  # core → services
        ("prompt/tags.py", "import loradeck.library", "Layers"),  # foundation → core
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, line, broken):
    tree = _copy_tree(tmp_path)
    target = tree / "src" / "loradeck" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and broken in result.stdout.split("Broken contracts")[1]


def test_no_import_cycle_between_packages():
    import grimp

    graph = grimp.build_graph("loradeck")
    packages = sorted(m for m in graph.find_children("loradeck") if graph.find_children(m))
    cycles = [
        (a, b)
        for a, b in itertools.combinations(packages, 2)
        if graph.chain_exists(a, b, as_packages=True) and graph.chain_exists(b, a, as_packages=True)
    ]
    assert cycles == []
