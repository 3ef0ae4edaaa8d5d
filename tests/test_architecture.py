"""The layers of docs/architecture.md, checked on every import statement of every module.

A lower layer never imports an upper one, at module level or inside a function: data flows one
way around the loop, and each package can be used (and tested) with only the ones below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: What each package may import of ours (docs/architecture.md, "Layers").
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "protocol": frozenset({"core"}),
    "simulator": frozenset({"core", "protocol"}),
    "drivers": frozenset({"core", "protocol", "simulator"}),
    "controller": frozenset({"core", "protocol", "simulator", "drivers"}),
    "fitting": frozenset({"core", "protocol"}),
}


def _imports_of_ours(path: Path) -> list[tuple[int, str]]:
    """Every absolute import of one of our packages in ``path``: (line, top-level package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [(node.lineno, n.split(".")[0]) for n in names if n.split(".")[0] in ALLOWED]
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {top}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, top in _imports_of_ours(path)
        if top != package and top not in ALLOWED[package]
    ]
    assert not wrong, f"Expected {package} to import only {sorted(ALLOWED[package])}: {wrong}"


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from controller.loop import ControlLoop\n    import core.errors\n"
    )
    assert _imports_of_ours(module) == [(2, "controller"), (3, "core")]
