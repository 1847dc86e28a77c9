"""Every ``SAMOPS_*`` variable samops reads is listed once (``reconciler/settings.py``) and
documented; one it does not read is reported at start-up, with the nearest known name."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.settings import KNOWN, VARIABLES, unknown_variables
from tests.conftest import PROJECT_ROOT

SAMOPS = str(Path(sys.executable).parent / "samops")
READ_IN_CODE = {
    name
    for folder in ("reconciler", "serve")
    for path in (PROJECT_ROOT / folder).rglob("*.py")
    for name in re.findall(r'"(SAMOPS_[A-Z_]+)"', path.read_text())
}
DOCS = "\n".join(p.read_text() for p in (PROJECT_ROOT / "docs").glob("*.md"))


def test_every_variable_the_code_reads_is_listed() -> None:
    assert set() == READ_IN_CODE - KNOWN


@pytest.mark.parametrize("variable", [v.name for v in VARIABLES])
def test_every_listed_variable_is_documented(variable: str) -> None:
    assert f"`{variable}`" in DOCS


@pytest.mark.parametrize(
    ("environ", "said"),
    [
        pytest.param({"SAMOPS_PRT": "1"}, ["SAMOPS_PRT", "did you mean SAMOPS_PORT?"], id="typo"),
        pytest.param({"SAMOPS_ZZZZZZZZ": "1"}, ["SAMOPS_ZZZZZZZZ", "docs/daemon.md"], id="far"),
        pytest.param({"SAMOPS_PORT": "1", "SAMOPS_FAIL_ON": "high"}, [], id="known"),
        pytest.param({"OTHER_PORT": "1"}, [], id="not-ours"),
    ],
)
def test_unknown_variables_are_named_with_a_hint(environ: dict[str, str], said: list[str]) -> None:
    sentences = unknown_variables(environ)
    assert all(any(part in s for s in sentences) for part in said)
    assert bool(sentences) == bool(said)


def test_serve_reports_an_unknown_variable_at_start_up(tmp_path: Path) -> None:
    environ = {**os.environ, "SAMOPS_PRT": "8081"}
    done = subprocess.run(
        [SAMOPS, "serve", "--database-url", "mysql://nobody@127.0.0.1/none"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert "SAMOPS_PRT is set but is not a samops setting" in done.stderr
    assert "did you mean SAMOPS_PORT?" in done.stderr


SETTINGS_CLASSES = [
    ("serve/settings.py", None),
    ("reconciler/settings.py", {"DaemonSettings"}),
]


def undocumented_fields(source: str, only: set[str] | None) -> list[str]:
    """``Class.field`` of every annotated field not followed by its docstring."""
    missing = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef) or (only is not None and node.name not in only):
            continue
        for index, statement in enumerate(node.body):
            if not isinstance(statement, ast.AnnAssign):
                continue
            after = node.body[index + 1] if index + 1 < len(node.body) else None
            documented = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
            if not documented:
                missing.append(f"{node.name}.{ast.unparse(statement.target)}")
    return missing


@pytest.mark.parametrize(("path", "only"), SETTINGS_CLASSES, ids=lambda p: str(p))
def test_every_settings_field_says_what_it_is(path: str, only: set[str] | None) -> None:
    assert undocumented_fields((PROJECT_ROOT / path).read_text(), only) == []


def test_the_field_check_finds_an_undocumented_field() -> None:
    source = "class S:\n    a: int = 1\n    '''A.'''\n    b: int = 2\n"
    assert undocumented_fields(source, None) == ["S.b"]


ENVIRON_READ = re.compile(r"""os\.(environ|getenv)[^\n]*["'](SAMOPS|OPENAI)_""")


def test_settings_are_read_from_the_environment_in_one_place() -> None:
    readers = {
        str(path.relative_to(PROJECT_ROOT))
        for folder in ("reconciler", "serve")
        for path in (PROJECT_ROOT / folder).rglob("*.py")
        if ENVIRON_READ.search(path.read_text())
    }
    assert readers == set(), f"read these through reconciler.settings.setting: {readers}"
