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


SERVE_MODULES = sorted((PROJECT_ROOT / "serve").rglob("*.py"))
SERVE_MAY_IMPORT = ("reconciler.api", "reconciler.errors", "reconciler.sam", "reconciler.store")
"""``reconciler.api`` names what the server uses of the rest (DESIGN.md, docs/architecture.md)."""


def _from_imports(source: str) -> list[tuple[str, str]]:
    """(module, name) of every ``import module`` and ``from module import name``."""
    pairs = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            pairs += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            pairs += [(node.module, alias.name) for alias in node.names]
    return pairs


def reconciler_beyond_its_api(source: str) -> set[str]:
    """Modules of ``reconciler`` a serve module imports that are not its public API."""
    return {
        module
        for module, _ in _from_imports(source)
        if module.split(".")[0] == "reconciler"
        and not any(module == a or module.startswith(a + ".") for a in SERVE_MAY_IMPORT)
    }


def private_names_of_other_packages(source: str, package: str) -> list[str]:
    return [
        f"{module}.{name}"
        for module, name in _from_imports(source)
        if name.startswith("_")
        and name != "__future__"
        and module != "__future__"
        and module.split(".")[0] != package
    ]


@pytest.mark.parametrize(
    "path", [str(p.relative_to(PROJECT_ROOT)) for p in SERVE_MODULES], ids=lambda p: p
)
def test_serve_uses_only_the_public_api_of_reconciler(path: str) -> None:
    offending = reconciler_beyond_its_api((PROJECT_ROOT / path).read_text())
    assert not offending, f"{path} imports {offending}; add what it needs to reconciler/api.py"


@pytest.mark.parametrize(
    "path",
    [str(p.relative_to(PROJECT_ROOT)) for p in [*MODULES, *SERVE_MODULES]],
    ids=lambda p: p,
)
def test_no_private_name_is_imported_from_another_package(path: str) -> None:
    source = (PROJECT_ROOT / path).read_text()
    private = private_names_of_other_packages(source, path.split("/")[0])
    assert not private, f"{path} imports private names of another package: {private}"


def test_the_layout_rules_find_what_they_forbid() -> None:
    source = (
        "from reconciler.cli.common import _hidden\n"
        "from reconciler.daemon import Daemon\n"
        "import reconciler.apply\n"
        "from reconciler.api import Daemon as D\n"
        "from reconciler.store.db import reading\n"
        "from serve.chat import _private\n"
    )
    assert reconciler_beyond_its_api(source) == {
        "reconciler.cli.common",
        "reconciler.daemon",
        "reconciler.apply",
    }
    assert private_names_of_other_packages(source, "serve") == ["reconciler.cli.common._hidden"]
