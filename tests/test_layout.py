"""Architecture rules of DESIGN.md that a test can hold: ``reconciler`` never imports ``serve``."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import PROJECT_ROOT

MODULES = sorted((PROJECT_ROOT / "reconciler").rglob("*.py"))


def _imported(path: str) -> set[str]:
    tree = ast.parse((PROJECT_ROOT / path).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "path", [str(p.relative_to(PROJECT_ROOT)) for p in MODULES], ids=lambda p: p
)
def test_reconciler_never_imports_serve(path: str) -> None:
    offending = {n for n in _imported(path) if n == "serve" or n.startswith("serve.")}
    assert not offending, f"{path} imports {offending}; hand the server a callback instead"


@pytest.mark.parametrize(
    "path", [str(p.relative_to(PROJECT_ROOT)) for p in MODULES], ids=lambda p: p
)
def test_every_module_says_its_place_in_a_docstring(path: str) -> None:
    tree = ast.parse((PROJECT_ROOT / path).read_text())
    if path.endswith("__init__.py") and not tree.body:
        return
    assert ast.get_docstring(tree), f"{path} has no module docstring"
