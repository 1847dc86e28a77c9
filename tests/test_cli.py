"""The ``samops`` command: exit codes, output shapes, keys and sealed secrets."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from reconciler.apikeys import KEY_PREFIX, digests_match, presented_digests
from reconciler.cli import cli
from reconciler.errors import SealingError
from reconciler.sam.kinds import KINDS
from reconciler.sealing import unseal
from tests.conftest import MANIFESTS, GitRepo

SAMOPS = Path(sys.executable).parent / "samops"


def key_matches(key: str, digests: list[str]) -> bool:
    return digests_match(presented_digests(key), digests)


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    return result.exit_code, result.output


def test_example_manifests_are_valid_through_the_installed_command() -> None:
    done = subprocess.run(
        [str(SAMOPS), "validate", str(MANIFESTS)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("12 files, 12 resources: valid")


FIVE_MISTAKES = {
    "clients/a.yaml": """\
        apiVersion: smarter.sh/v1
        kind: LLMClient
        metadata:
          name: a
        spec:
          config:
            defaultTemprature: 0.2
          plugins: [helpdesk]
          functions: [stockprice]
        """,
    "plugins/p.yaml": """\
        apiVersion: smarter.sh/v1
        kind: SqlPlugin
        metadata:
          name: p
        spec:
          selector: {directive: always}
          prompt: {systemRole: Use the tool.}
          connection: db
          sqlData:
            sqlQuery: SELECT * FROM t WHERE id = {id}
        """,
    "connections/db.yaml": """\
        apiVersion: smarter.sh/v1
        kind: SqlConnection
        metadata:
          name: db
        spec:
          connection:
            dbEngine: django.db.backends.postgresql
            database: reports
        """,
}

FIVE_MISTAKES_REPORT = [
    "clients/a.yaml:7:5: spec.config.defaultTemprature: error: unknown key 'defaultTemprature'",
    "clients/a.yaml:8:13: spec.plugins[0]: error: no plugin 'helpdesk' in this revision",
    "clients/a.yaml:9:15: spec.functions[0]: error: unknown built-in function 'stockprice'",
    "connections/db.yaml:6:3: spec.connection: error: django.db.backends.postgresql needs a "
    "hostname",
    "plugins/p.yaml:10:15: spec.sqlData.sqlQuery: error: {id} is not a declared parameter "
    "(declare it under parameters) (got 'SELECT * FROM t WHERE id = {id}')",
]


def test_every_mistake_of_a_revision_is_reported_in_one_run(git_repo: GitRepo) -> None:
    for path, text in FIVE_MISTAKES.items():
        git_repo.write(path, text)
    git_repo.commit("five mistakes in three files")

    code, output = run("validate", "--repo", str(git_repo.root))

    lines = output.splitlines()
    problems = [line for line in lines if ": error: " in line]
    assert problems == FIVE_MISTAKES_REPORT
    assert lines[-1] == "3 files, 3 resources: invalid: 5 errors, 0 warnings"
    assert code == 1


def test_json_output_has_the_documented_shape(git_repo: GitRepo) -> None:
    for path, text in FIVE_MISTAKES.items():
        git_repo.write(path, text)
    revision = git_repo.commit()

    code, output = run("validate", "--repo", str(git_repo.root), "--format", "json")

    report = json.loads(output)
    assert code == 1
    assert set(report) == {
        "version",
        "valid",
        "revision",
        "files",
        "references_checked",
        "errors",
        "warnings",
        "resources",
        "diagnostics",
    }
    assert (report["version"], report["valid"], report["revision"]) == (1, False, revision)
    assert report["resources"] == [
        {"kind": "LLMClient", "name": "a", "file": "clients/a.yaml", "line": 1, "complete": False},
        {
            "kind": "SqlConnection",
            "name": "db",
            "file": "connections/db.yaml",
            "line": 1,
            "complete": False,
        },
        {"kind": "SqlPlugin", "name": "p", "file": "plugins/p.yaml", "line": 1, "complete": False},
    ]
    first = report["diagnostics"][0]
    assert first == {
        "severity": "error",
        "code": "unknown-key",
        "file": "clients/a.yaml",
        "line": 7,
        "column": 5,
        "path": "spec.config.defaultTemprature",
        "message": "unknown key 'defaultTemprature'",
        "value": None,
        "hint": "did you mean 'defaultTemperature'?",
        "related": [],
    }


WARNING_ONLY = """\
apiVersion: smarter.sh/v1
kind: Secret
metadata:
  name: Api-Token
spec:
  config:
    valueFrom: {env: TOKEN}
"""


@pytest.mark.parametrize(
    ("args", "files", "expected_code"),
    [
        pytest.param([], {"s.yaml": WARNING_ONLY}, 0, id="warnings-pass"),
        pytest.param(["--strict"], {"s.yaml": WARNING_ONLY}, 1, id="strict-warnings-fail"),
        pytest.param([], {"s.yaml": "kind: Nope\n"}, 1, id="invalid"),
        pytest.param(["--format", "xml"], {}, 2, id="bad-format-is-usage"),
        pytest.param(["--repo", "."], {}, 2, id="path-and-repo-is-usage"),
        pytest.param(["--no-such-flag"], {}, 2, id="unknown-flag-is-usage"),
    ],
)
def test_validate_exit_codes(
    tmp_path: Path, args: list[str], files: dict[str, str], expected_code: int
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    code, output = run("validate", str(tmp_path), *args)
    assert code == expected_code, output


def test_one_file_is_validated_alone_without_its_references() -> None:
    support = MANIFESTS / "clients/support.yaml"

    code, output = run("validate", str(support))
    assert code == 0, output
    assert output.splitlines() == [
        "references to other resources were not checked (one file alone): validate its "
        "folder to check them",
        "1 file, 1 resource: valid",
    ]
    code, output = run("validate", str(support), "--format", "json")
    document = json.loads(output)
    assert (code, document["valid"], document["references_checked"]) == (0, True, False)
    assert document["resources"][0]["file"] == "support.yaml"


def test_one_bad_file_is_reported_at_the_path_given(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: smarter.sh/v1\nkind: LLMClient\nmetadata: {name: x}\n"
        "spec:\n  config: {defaultModle: gpt-4o}\n"
    )

    code, output = run("validate", str(bad))

    assert code == 1
    assert output.startswith(f"{bad.as_posix()}:5:12: spec.config.defaultModle: error:")


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_plan_and_apply_refuse_a_single_file(command: str) -> None:
    code, output = run(command, str(MANIFESTS / "clients/support.yaml"))
    assert code == 1
    assert "is a file; this command needs every manifest of a revision" in output


def test_unreadable_source_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    code, output = run("validate", "--repo", str(tmp_path))
    assert code == 1
    assert "is not a git repository" in output


def test_keys_create_prints_the_key_once_then_a_manifest_of_its_digest() -> None:
    code, output = run("keys", "create", "Support-Bot key", "--username", "ops")
    assert code == 0
    key, manifest_text = output.split("\n", 1)
    assert key.startswith(KEY_PREFIX) and len(key) == len(KEY_PREFIX) + 43
    manifest = yaml.safe_load(manifest_text)
    config = manifest["spec"]["config"]
    assert manifest["metadata"]["name"] == "support_bot_key"
    assert config["digest"] == ["sha256:" + hashlib.sha256(key.encode()).hexdigest()]
    assert config["isActive"] is True and config["username"] == "ops"
    assert key not in manifest_text
    assert key_matches(key, config["digest"]) and not key_matches(key + "x", config["digest"])


def test_keys_create_json_and_sha512() -> None:
    code, output = run("keys", "create", "k", "--format", "json", "--algorithm", "sha512")
    document = json.loads(output)
    assert code == 0 and set(document) == {"key", "manifest"}
    digest = document["manifest"]["spec"]["config"]["digest"][0]
    assert digest == "sha512:" + hashlib.sha512(document["key"].encode()).hexdigest()


def test_two_keys_are_never_the_same() -> None:
    keys = {run("keys", "create", "k")[1].split("\n", 1)[0] for _ in range(20)}
    assert len(keys) == 20


def test_keys_digest_reads_stdin() -> None:
    assert run("keys", "digest", stdin="abc\n") == (
        0,
        "sha256:" + hashlib.sha256(b"abc").hexdigest() + "\n",
    )


def test_keys_create_refuses_a_bad_name() -> None:
    code, output = run("keys", "create", "no/slashes")
    assert code == 2
    assert "is not a valid name" in output


def test_sealed_secret_opens_only_with_the_daemons_key(tmp_path: Path) -> None:
    code, public_key = run("secrets", "keygen", "--out", str(tmp_path / "daemon.key"))
    assert code == 0
    private_key = (tmp_path / "daemon.key").read_text().strip()
    assert (tmp_path / "daemon.key").stat().st_mode & 0o777 == 0o600
    _, other_public = run("secrets", "keygen", "--out", str(tmp_path / "other.key"))

    code, output = run(
        "secrets",
        "encrypt",
        "DB password",
        "--public-key",
        public_key.strip(),
        stdin="s3cret-value\n",
    )

    assert code == 0
    assert "s3cret-value" not in output
    manifest = yaml.safe_load(output)
    assert manifest["metadata"]["name"] == "db_password"
    sealed = manifest["spec"]["config"]["encryptedValue"]
    assert unseal(sealed, secret_name="db_password", private_key=private_key) == "s3cret-value"
    other_private = (tmp_path / "other.key").read_text().strip()
    with pytest.raises(SealingError, match="does not open with this key"):
        unseal(sealed, secret_name="db_password", private_key=other_private)
    with pytest.raises(SealingError, match="does not open with this key"):
        unseal(sealed, secret_name="another_secret", private_key=private_key)
    assert other_public != public_key
    (tmp_path / "secret.yaml").write_text(output)
    assert run("validate", str(tmp_path))[0] == 0


def test_secrets_keygen_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "daemon.key").write_text("precious")
    code, output = run("secrets", "keygen", "--out", str(tmp_path / "daemon.key"))
    assert code == 1 and "refusing to overwrite" in output
    assert (tmp_path / "daemon.key").read_text() == "precious"


def test_secrets_encrypt_without_a_key_is_usage() -> None:
    code, output = run("secrets", "encrypt", "x", stdin="v")
    assert code == 2 and "--public-key" in output


def _documents(folder: Path) -> list[Any]:
    return [
        doc
        for path in sorted(folder.rglob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
    ]


def test_schema_of_all_kinds_accepts_the_example_manifests() -> None:
    code, output = run("schema")
    schema = json.loads(output)
    assert code == 0
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for document in _documents(MANIFESTS):
        validator.validate(document)
    broken = _documents(MANIFESTS)[0]
    broken["spec"]["config"]["defaultTemprature"] = 0.1
    assert not validator.is_valid(broken)


@pytest.mark.parametrize("kind", list(KINDS))
def test_schema_of_one_kind_is_valid_json_schema(kind: str) -> None:
    code, output = run("schema", kind.lower())
    schema = json.loads(output)
    assert code == 0
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["kind"] == {"const": kind, "title": "Kind"}


def test_schema_unknown_kind_is_usage() -> None:
    assert run("schema", "Chatbot")[0] == 2


def test_help_explains_every_command() -> None:
    code, output = run("--help")
    assert code == 0
    for command in ("validate", "schema", "keys", "secrets"):
        assert command in output
    for group, sub in (
        ("keys", "create"),
        ("keys", "digest"),
        ("secrets", "encrypt"),
        ("secrets", "keygen"),
    ):
        code, output = run(group, sub, "--help")
        assert code == 0 and "Usage: " in output


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--path", "clients"), id="path"),
        pytest.param(("--ref", "main~1"), id="ref"),
    ],
)
def test_git_options_without_a_repository_are_usage(args: tuple[str, ...]) -> None:
    code, output = run("validate", str(MANIFESTS), *args)
    assert code == 2
    assert "add --repo" in output


def test_without_git_folders_still_validate_and_repositories_say_why_not(
    git_repo: GitRepo, tmp_path: Path
) -> None:
    """On a machine without git, GitPython refused to import (every command died with its
    traceback, even one reading a folder). Now a folder validates, and a repository is a
    sentence with a hint, before anything starts."""
    env = {
        "PATH": str(tmp_path / "no-git-here"),
        "SAMOPS_DATA_DIR": str(tmp_path / "data"),
        "SAMOPS_DATABASE_URL": f"sqlite:///{tmp_path / 'state.sqlite3'}",
    }
    folder = subprocess.run(
        [str(SAMOPS), "validate", str(MANIFESTS)], env=env, capture_output=True, text=True
    )
    assert folder.returncode == 0, folder.stderr
    assert "valid" in folder.stdout
    for command in ("validate", "plan", "run"):
        args = [str(SAMOPS), command, "--repo", str(git_repo.root), "--path", "manifests"]
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert "git is not installed or not on PATH (hint: install git" in done.stderr
        assert "Traceback" not in done.stderr
