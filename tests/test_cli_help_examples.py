"""Every ``--help`` has an example, and every example runs as written in a non-interactive
shell (bash, no terminal, no standard input), in a sandbox laid out as the examples assume: a
git repository of the example manifests with a branch or two, its database applied.

The daemons' examples (``run``, ``serve``) start servers that never return: their command lines
are parsed by the real CLI (an unknown flag fails) instead of run; tests/daemon runs them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from reconciler.cli import _plug_in_commands, cli
from tests.conftest import MANIFESTS, GitRepo

SAMOPS = Path(sys.executable).parent / "samops"
DAEMONS = {"run", "serve"}
MAKERS = ("samops secrets keygen", "samops keys create", "mkdir ")
"""Examples that make files (a key pair, a key, a folder) which other examples read."""


def _makes_files(line: str) -> bool:
    return line.startswith(MAKERS)


def _commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(prefix) or "samops", group
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


def examples(command: click.Command) -> list[str]:
    """The example lines of a command's help (a trailing backslash continues a line)."""
    text = command.help or ""
    found = re.search(r"Examples?:\n((?:[ \t]+\S.*\n?)+)", text)
    if found is None:
        return []
    lines: list[str] = []
    for raw in found.group(1).splitlines():
        line = raw.strip()
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1].rstrip() + " " + line
        else:
            lines.append(line)
    return lines


_plug_in_commands()
COMMANDS = list(_commands(cli))
_BY_LINE: dict[str, str] = {}  # a group may show one of its commands' examples: run it once
for _name, _command in COMMANDS:
    for _line in examples(_command):
        _BY_LINE.setdefault(_line, _name)
ALL_EXAMPLES = sorted(_BY_LINE.items(), key=lambda pair: not _makes_files(pair[0]))
"""In help order, but the examples that make files go first."""


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_help_has_an_example(name: str, command: click.Command) -> None:
    assert examples(command), f"'{name} --help' shows no example"
    assert any("samops" in line for line in examples(command))


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two sandboxes to copy: the example repository applied, and the same after the
    examples that make files ran. Each example runs in a copy of its own, so examples run in
    any order and on any worker (``make test`` runs the suite on several)."""
    repo = GitRepo(tmp_path_factory.mktemp("examples") / "bots")
    shutil.copytree(MANIFESTS, repo.root / "manifests")
    repo.commit("example manifests")
    (repo.root / "manifests/README.md").write_text("the example repository\n")
    repo.commit("docs")
    repo.git("branch", "my-branch")
    done = subprocess.run(
        [str(SAMOPS), "apply", "manifests"],
        cwd=repo.root,
        env=_env(repo.root),
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    prepared = tmp_path_factory.mktemp("prepared") / "bots"
    shutil.copytree(repo.root, prepared, symlinks=True)
    for line, _name in ALL_EXAMPLES:
        if _makes_files(line):
            made = _run_example(prepared, line)
            assert made.returncode == 0, f"{line}\n{made.stderr}"
    return repo.root, prepared


@pytest.fixture
def sandbox(templates: tuple[Path, Path], tmp_path: Path, line: str) -> Path:
    """A copy of the sandbox the example ``line`` expects: before the examples that make
    files when it is one of them, after them otherwise."""
    clean, prepared = templates
    copy = tmp_path / "bots"
    shutil.copytree(clean if _makes_files(line) else prepared, copy, symlinks=True)
    return copy


def _run_example(sandbox: Path, line: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", line],
        cwd=sandbox,
        env=_env(sandbox),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _env(home: Path) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("SAMOPS_", "OPENAI_"))}
    return {
        **kept,
        "HOME": str(home),
        "PATH": f"{SAMOPS.parent}{os.pathsep}{os.environ['PATH']}",
        "DB_PASSWORD": "example-password",
        "STACKADEMY_API_TOKEN": "demo-token",
        "SAMOPS_SECRETS_ENV": "STACKADEMY_API_TOKEN",
    }


@pytest.mark.parametrize(("line", "name"), ALL_EXAMPLES, ids=[line for line, _ in ALL_EXAMPLES])
def test_help_example_runs_as_written(sandbox: Path, line: str, name: str) -> None:
    if name in DAEMONS:
        argv = shlex.split(line.split("#")[0].replace('"$S"', "secret"))[1:]
        cli.make_context("samops", argv)  # raises on an unknown flag or a bad value
        return
    done = _run_example(sandbox, line)
    assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
