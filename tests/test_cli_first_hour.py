"""The CLI as a newcomer meets it: reading commands that write nothing, bad invocations that
get a sentence instead of a traceback, terraform's exit codes, kubectl's verbs and outputs.

Every case runs the real ``samops`` executable in a child process, as a shell would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, inspect

from reconciler.store.db import _alembic_config, create_database_engine
from tests.conftest import MANIFESTS

SAMOPS = Path(sys.executable).parent / "samops"


def samops(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SAMOPS_")}
    return subprocess.run(
        [str(SAMOPS), *args],
        cwd=cwd,
        env={**environment, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


READERS = [
    pytest.param(["status"], id="status"),
    pytest.param(["get", "llmclient"], id="get"),
    pytest.param(["get", "llmclient", "support", "-o", "yaml"], id="get-name"),
    pytest.param(["describe", "LLMClient", "support"], id="describe"),
    pytest.param(["plan", "MANIFESTS"], id="plan"),
    pytest.param(["chat", "support", "hi"], id="chat"),
    pytest.param(["reconcile"], id="reconcile"),
    pytest.param(["suspend"], id="suspend"),
    pytest.param(["resume"], id="resume"),
]


def _args(args: list[str], manifests: Path) -> list[str]:
    return [str(manifests) if a == "MANIFESTS" else a for a in args]


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    return Path(shutil.copytree(MANIFESTS, tmp_path / "manifests"))


# --- reading never writes -------------------------------------------------------------------


@pytest.mark.parametrize("args", READERS)
def test_reader_in_an_unrelated_folder_creates_nothing(
    tmp_path: Path, manifests: Path, args: list[str]
) -> None:
    folder = tmp_path / "unrelated"
    folder.mkdir()
    done = samops(*_args(args, manifests), cwd=folder)
    assert done.returncode == 1, done.stdout + done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith("error: there is no samops database at data/samops.sqlite3"), first
    assert "'samops apply' or 'samops run' create it" in first
    assert "Traceback" not in done.stderr
    assert list(folder.iterdir()) == []  # no ./data, no SQLite file


@pytest.mark.parametrize("args", READERS)
def test_reader_on_an_empty_postgresql_database_creates_no_table(
    postgres_url: str, tmp_path: Path, manifests: Path, args: list[str]
) -> None:
    done = samops(*_args(args, manifests), cwd=tmp_path, env={"SAMOPS_DATABASE_URL": postgres_url})
    assert done.returncode == 1
    first = done.stderr.splitlines()[0]
    assert "holds no samops schema" in first, first
    assert "'samops db upgrade' creates the empty schema" in first
    engine = create_engine(postgres_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("args", READERS)
def test_reader_on_an_old_schema_asks_for_db_upgrade(
    database_url: str, tmp_path: Path, manifests: Path, args: list[str]
) -> None:
    from alembic import command

    engine = create_database_engine(database_url)
    command.upgrade(_alembic_config(engine), "0002")
    done = samops(*_args(args, manifests), cwd=tmp_path, env={"SAMOPS_DATABASE_URL": database_url})
    assert done.returncode == 1
    first = done.stderr.splitlines()[0]
    assert "has schema revision 0002, older than this samops'" in first, first
    assert "run 'samops db upgrade'" in first
    with engine.connect() as connection:
        version = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    engine.dispose()
    assert version == "0002"  # not migrated behind the user's back


def test_only_owners_create_the_database(tmp_path: Path, manifests: Path) -> None:
    assert samops("db", "upgrade", cwd=tmp_path).returncode == 0
    assert (tmp_path / "data" / "samops.sqlite3").is_file()
    assert samops("status", cwd=tmp_path).returncode == 0
    applied = samops("apply", str(manifests), cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr


# --- no tracebacks for user errors ----------------------------------------------------------

BAD_INVOCATIONS = [
    # (args, environment, expected words in the first line of stderr)
    (["status", "--database-url", "mysql://root@127.0.0.1/x"], {}, "names a driver samops"),
    (["status", "--database-url", "postgresql+asyncpg://u@127.0.0.1/x"], {}, "names a driver"),
    (["status", "--database-url", "oracle+nope://u@h/x"], {}, "no driver for the database URL"),
    (["status", "--database-url", "not a url"], {}, "is not a URL SQLAlchemy can read"),
    (["status", "--database-url", "postgresql://u:hunter2@127.0.0.1:1/x"], {}, "cannot use"),
    (
        ["get", "plugin"],
        {"SAMOPS_DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:1/x"},
        "cannot use",
    ),
    (
        ["plan", "MANIFESTS", "--database-url", "postgresql://u:hunter2@127.0.0.1:1/x"],
        {},
        "cannot use",
    ),
    (
        ["apply", "MANIFESTS", "--database-url", "postgresql://u:hunter2@127.0.0.1:1/x"],
        {},
        "cannot use",
    ),
    (["apply", "MANIFESTS", "--database-url", "mysql://root@127.0.0.1/x"], {}, "names a driver"),
    (["db", "upgrade", "--database-url", "sqlite:////proc/nope/x.sqlite3"], {}, "error:"),
    (["validate", "no-such-folder"], {}, "no-such-folder does not exist"),
    (["plan", "no-such-folder"], {}, "no-such-folder does not exist"),
    (["validate", "--repo", "no-such-repo"], {}, "no-such-repo"),
    (["validate", "--repo", "NOT_A_REPO"], {}, "not a git repository"),
    (["validate", "--repo", "REPO", "--ref", "no-such-ref"], {}, "no-such-ref"),
    (["apply", "--repo", "REPO", "--ref", "no-such-ref"], {}, "no-such-ref"),
    (["plan", "--base", "no-such-ref", "--repo", "REPO"], {}, "no-such-ref"),
    (["validate", "UNREADABLE"], {}, "gone.yaml"),
    (["validate", "MANIFESTS/clients/support.yaml", "--strict", "-o", "yaml"], {}, "Invalid value"),
    (["get", "gadget"], {}, "Invalid value for 'KIND': 'gadget' is not one of"),
    (["describe", "plugin"], {}, "Missing argument 'NAME'"),
    (["plan", "MANIFESTS", "--detailed-exitcod"], {}, "No such option"),
    (["keys", "create", "bad/name"], {}, "is not a valid name"),
    (["keys", "digest"], {}, "no key on standard input"),
    (["secrets", "encrypt", "s", "--public-key", "nope"], {}, "error:"),
    (["secrets", "encrypt", "s"], {}, "give --public-key"),
    (["secrets", "keygen", "--out", "/proc/nope/key"], {}, "cannot write"),
    (["chat", "nobody", "hi", "--ref", "no-such-ref", "--repo", "REPO"], {}, "no-such-ref"),
    (["completion", "powershell"], {}, "Invalid value for '{bash|zsh|fish}'"),
    (["version", "-o", "xml"], {}, "Invalid value"),
    (["nope"], {}, "No such command 'nope'"),
    (["run", "--database-url", "mysql://root@127.0.0.1/x", "MANIFESTS"], {}, "names a driver"),
    (["serve", "--database-url", "postgresql://u:hunter2@127.0.0.1:1/x"], {}, "cannot use"),
]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [pytest.param(*case, id=" ".join(case[0])[:60]) for case in BAD_INVOCATIONS],
)
def test_bad_invocation_is_one_sentence_without_traceback(
    tmp_path: Path, manifests: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (tmp_path / "plain").mkdir()
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()  # a manifest that cannot be read, even by root: a dangling link
    (unreadable / "gone.yaml").symlink_to("missing.yaml")
    replacements = {
        "MANIFESTS": str(manifests),
        "NOT_A_REPO": str(tmp_path / "plain"),
        "REPO": str(repo),
        "UNREADABLE": str(unreadable),
    }
    argv = [a.replace(k, v) for a in args for k, v in [_first(a, replacements)]]
    done = samops(*argv, cwd=tmp_path, env={"SAMOPS_DATA_DIR": str(tmp_path / "data"), **env})
    output = done.stdout + done.stderr
    assert done.returncode in (1, 2), output
    assert "Traceback" not in output
    assert "hunter2" not in output
    lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    assert lines, output
    assert expected in "\n".join(lines[:3]), output


def _first(arg: str, replacements: dict[str, str]) -> tuple[str, str]:
    for key, value in replacements.items():
        if key in arg:
            return key, value
    return arg, arg


# --- exit codes like terraform --------------------------------------------------------------


def test_detailed_exitcode_follows_terraform(tmp_path: Path, manifests: Path) -> None:
    assert samops("db", "upgrade", cwd=tmp_path).returncode == 0
    plan = ["plan", str(manifests), "--detailed-exitcode"]
    assert samops(*plan, cwd=tmp_path).returncode == 2  # changes
    assert samops("apply", str(manifests), cwd=tmp_path).returncode == 0
    assert samops(*plan, cwd=tmp_path).returncode == 0  # no changes
    mistyped = samops(*plan, "--outptu", "json", cwd=tmp_path)
    assert mistyped.returncode == 1  # an error, never read as "changes"
    assert "No such option '--outptu'. Did you mean '--output'?" in mistyped.stderr
    assert samops(*plan, "-o", "xml", cwd=tmp_path).returncode == 1
    assert samops("plan", "--detailed-exitcode", "--head", "HEAD", cwd=tmp_path).returncode == 1
    # without the flag, usage errors keep the documented 2
    assert samops("plan", str(manifests), "--outptu", "json", cwd=tmp_path).returncode == 2


# --- kubectl-shaped verbs -------------------------------------------------------------------


@pytest.fixture
def applied(tmp_path: Path, manifests: Path) -> Path:
    done = samops("apply", str(manifests), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path


def test_get_outputs_with_and_without_name(applied: Path) -> None:
    table = samops("get", "llmclient", cwd=applied).stdout.splitlines()
    assert table[0].split() == ["NAME", "PROVIDER", "MODEL", "API", "KEY", "FILE"]
    assert [line.split()[0] for line in table[1:]] == [
        "lab_assistant",
        "stackademy_advisor",
        "support",
    ]
    wide = samops("get", "llmclient", "-o", "wide", cwd=applied).stdout.splitlines()
    assert "DESCRIPTION" in wide[0] and "VERSION" in wide[0]
    one = samops("get", "llmclient", "support", cwd=applied).stdout.splitlines()
    assert [line.split()[0] for line in one] == ["NAME", "support"]

    listed = json.loads(samops("get", "llmclient", "-o", "json", cwd=applied).stdout)
    assert [m["metadata"]["name"] for m in listed] == [
        "lab_assistant",
        "stackademy_advisor",
        "support",
    ]
    assert {m["kind"] for m in listed} == {"LLMClient"}
    named = json.loads(
        samops("get", "LLMClient", "support", "--format", "json", cwd=applied).stdout
    )
    assert named == listed[2]
    stream = list(yaml.safe_load_all(samops("get", "llmclient", "-o", "yaml", cwd=applied).stdout))
    assert stream == listed
    single = yaml.safe_load(samops("get", "llmclient", "support", "-o", "yaml", cwd=applied).stdout)
    assert single == named
    assert single == yaml.safe_load(samops("describe", "llmclient", "support", cwd=applied).stdout)
    assert single == json.loads(
        samops("describe", "llmclient", "support", "-o", "json", cwd=applied).stdout
    )
    missing = samops("get", "llmclient", "nobody", "-o", "yaml", cwd=applied)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: there is no LLMClient named 'nobody'")


def test_get_yaml_re_applies_with_nothing_but_the_file_names_changed(
    applied: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "from-get"
    folder.mkdir()
    for kind in (
        "llmclient",
        "plugin",
        "sqlplugin",
        "apiplugin",
        "sqlconnection",
        "apiconnection",
        "secret",
        "provider",
        "smarterauthtoken",
        "budget",
    ):
        out = samops("get", kind, "-o", "yaml", cwd=applied).stdout
        (folder / f"{kind}.yaml").write_text(out)
    plan = json.loads(samops("plan", str(folder), "-o", "json", cwd=applied).stdout)
    assert plan["summary"] == {"create": 0, "update": 12, "delete": 0}
    assert {f["path"] for c in plan["changes"] for f in c["fields"]} == {"(file)"}


def test_status_speaks_yaml_and_json(applied: Path) -> None:
    as_json = json.loads(samops("status", "-o", "json", cwd=applied).stdout)
    as_yaml = yaml.safe_load(samops("status", "--output", "yaml", cwd=applied).stdout)
    assert as_json["generation"] == as_yaml["generation"] == 1


def test_version_names_samops_python_libraries_and_schema(applied: Path, tmp_path: Path) -> None:
    document = json.loads(samops("version", "-o", "json", cwd=applied).stdout)
    assert document["samops"] == "0.1.0"
    assert document["python"] == ".".join(map(str, sys.version_info[:3]))
    assert document["libraries"]["PyYAML"] == yaml.__version__
    assert document["database"]["schemaRevision"] == document["database"]["expectedSchemaRevision"]
    text = samops("version", cwd=applied).stdout
    assert text.startswith("samops 0.1.0 (Python ")
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    absent = json.loads(samops("version", "-o", "json", cwd=nowhere).stdout)
    assert absent["database"]["schemaRevision"] is None
    assert "there is no samops database" in absent["database"]["problem"]
    assert list(nowhere.iterdir()) == []


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _samops_completion samops"),
        ("zsh", "compdef _samops_completion samops"),
        ("fish", "complete --no-files --command samops"),
    ],
)
def test_completion_script_completes_commands(tmp_path: Path, shell: str, marker: str) -> None:
    script = samops("completion", shell, cwd=tmp_path)
    assert script.returncode == 0
    assert marker in script.stdout
    # the script asks samops itself; what it answers for `samops ge<TAB>` and a KIND:
    position = "ge" if shell == "fish" else "1"  # fish passes the word being completed
    answered = samops(
        cwd=tmp_path,
        env={
            "_SAMOPS_COMPLETE": f"{shell}_complete",
            "COMP_WORDS": "samops ge",
            "COMP_CWORD": position,
        },
    )
    assert "get" in answered.stdout
    kinds = samops(
        cwd=tmp_path,
        env={
            "_SAMOPS_COMPLETE": "bash_complete",
            "COMP_WORDS": "samops get llm",
            "COMP_CWORD": "2",
        },
    )
    assert "llmclient" in kinds.stdout


def test_bash_completion_works_in_a_real_bash(tmp_path: Path) -> None:
    script = tmp_path / "samops.bash"
    script.write_text(samops("completion", "bash", cwd=tmp_path).stdout)
    probe = (
        f'export PATH="{SAMOPS.parent}:$PATH"; source {script}; '
        'COMP_WORDS=(samops sta); COMP_CWORD=1; _samops_completion samops; echo "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["status"], done.stderr


# --- progress on long work ------------------------------------------------------------------


def _on_a_terminal(args: list[str], cwd: Path) -> str:
    """What a person at a terminal sees on standard error (a real pseudo-terminal)."""
    import pty

    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [str(SAMOPS), *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=follower,
            timeout=120,
            check=False,
        )
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: everything was read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert done.returncode in (0, 1)
    return seen.decode()


@pytest.fixture
def many_files(tmp_path: Path) -> Path:
    folder = Path(shutil.copytree(MANIFESTS, tmp_path / "many"))
    plugin = (MANIFESTS / "plugins" / "gobstopper.yaml").read_text()
    for i in range(400):
        renamed = plugin.replace("name: everlasting_gobstopper", f"name: extra_{i}")
        (folder / "plugins" / f"extra-{i}.yaml").write_text(renamed)
    return folder


@pytest.mark.parametrize(
    ("command", "stage"),
    [("validate", "files validated: 412/412"), ("apply", "changes written: 412/412")],
)
def test_long_work_shows_progress_on_a_terminal_only(
    tmp_path: Path, many_files: Path, command: str, stage: str
) -> None:
    seen = _on_a_terminal([command, str(many_files)], tmp_path)
    assert stage in seen
    assert seen.startswith("\r") and seen.endswith("\r")  # rewritten in place, then erased
    if command == "apply":
        samops("db", "upgrade", cwd=tmp_path)
    quiet = samops(command, str(many_files), cwd=tmp_path)  # not a terminal: no progress
    assert "validated:" not in quiet.stderr and "written:" not in quiet.stderr
    as_json = _on_a_terminal([command, str(many_files), "-o", "json"], tmp_path)
    assert "validated:" not in as_json and "written:" not in as_json
