"""Architecture rules of DESIGN.md that a test can hold: ``reconciler`` never imports ``serve``."""

from __future__ import annotations

import ast
from pathlib import Path

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


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Each module of reconciler and serve -> the project modules it imports at load time."""
    modules = {_module_name(p): p for p in [*MODULES, *SERVE_MODULES]}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.parse(path.read_text()).body:  # top level: what runs at import
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = (found & set(modules)) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_no_module_imports_itself_through_others() -> None:
    assert cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


SAM_MAY_IMPORT = ("reconciler.sam", "reconciler.errors", "reconciler.progress")


@pytest.mark.parametrize(
    "path",
    [str(p.relative_to(PROJECT_ROOT)) for p in MODULES if "/sam/" in str(p)],
    ids=lambda p: p,
)
def test_the_format_layer_imports_nothing_above_it(path: str) -> None:
    """``reconciler.sam`` is read by every stage, so it depends on none of them."""
    offending = {
        module
        for module, _ in _from_imports((PROJECT_ROOT / path).read_text())
        if module.split(".")[0] == "reconciler"
        and not any(module == a or module.startswith(a + ".") for a in SAM_MAY_IMPORT)
    }
    assert not offending, f"{path} imports {offending}"


MAX_MODULE_LINES = 500


@pytest.mark.parametrize(
    "path",
    [str(p.relative_to(PROJECT_ROOT)) for p in [*MODULES, *SERVE_MODULES]],
    ids=lambda p: p,
)
def test_modules_stay_small(path: str) -> None:
    lines = len((PROJECT_ROOT / path).read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path} has {lines} lines; split it by concern"
