"""Preview chat: ``samops chat CLIENT --ref REF`` and the admin preview route answer with the
configuration of a revision that is not applied, while the applied state keeps serving.

Real parts only: the example manifests in a git repository with branches, ``samops chat`` and
``samops run`` as child processes, the scripted upstream they start when ``OPENAI_API_KEY`` is
unset (``#system`` makes it answer with the system prompt it received)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from reconciler.apikeys import digest_of
from reconciler.apply import apply_revision
from reconciler.source import GitSource, validate_source
from reconciler.store.read import read_state
from tests.conftest import MANIFESTS, PROJECT_ROOT, GitRepo
from tests.daemon.conftest import SAMOPS, SUPPORT, DaemonProcess, set_role

MAIN_ROLE = "You are a friendly support agent"
BRANCH_ROLE = "You are the preview agent."
ADMIN_KEY = "samops_preview-admin-key-for-tests-only"
TYPO_LINE = SUPPORT.splitlines().index("    defaultTemperature: 0.3") + 1
OFFLINE = {"OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}


def branch(repo: GitRepo, name: str, change: Any) -> str:
    """Commit ``change(repo)`` on a new branch ``name``; back on main; the branch's commit."""
    repo.git("checkout", "--quiet", "-b", name)
    try:
        return str(change(repo))
    finally:
        repo.git("checkout", "--quiet", "main")


def typo(repo: GitRepo) -> str:
    path = repo.root / "manifests/clients/support.yaml"
    path.write_text(path.read_text().replace("defaultTemperature:", "defaultTemprature:"))
    return repo.commit("a typo")


def with_branches(repo: GitRepo) -> GitRepo:
    branch(repo, "preview", lambda r: set_role(r, BRANCH_ROLE))
    branch(repo, "broken", typo)
    return repo


def samops_chat(*args: str, env: dict[str, str], stdin: str | None = None) -> Any:
    return subprocess.run(
        [str(SAMOPS), "chat", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **OFFLINE, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def branches(repo: GitRepo, tmp_path: Path) -> dict[str, str]:
    """The example manifests on main, branches ``preview`` and ``broken``; the chat's env."""
    with_branches(repo)
    return {
        "SAMOPS_DATA_DIR": str(tmp_path / "data"),
        "SAMOPS_REPO": str(repo.root),
        "SAMOPS_PATH": "manifests",
    }


@pytest.fixture
def applied_main(
    branches: dict[str, str], repo: GitRepo, engine: Engine, database_url: str
) -> dict[str, str]:
    """The same, with main applied to a database (and the branches not)."""
    assert apply_revision(engine, validate_source(GitSource(repo.root, path="manifests"))).ok
    return {**branches, "SAMOPS_DATABASE_URL": database_url}


def applied_revision(database_url: str) -> str | None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return read_state(connection).last_applied_revision
    finally:
        engine.dispose()


# --- samops chat ------------------------------------------------------------------------------


def test_chat_with_ref_answers_with_the_branch_not_the_applied_state(
    applied_main: dict[str, str], repo: GitRepo
) -> None:
    main = repo.git("rev-parse", "main")
    done = samops_chat("support", "--ref", "preview", "#system", env=applied_main)
    assert done.returncode == 0, done.stderr
    assert BRANCH_ROLE in done.stdout
    assert MAIN_ROLE not in done.stdout
    assert applied_revision(applied_main["SAMOPS_DATABASE_URL"]) == main  # nothing applied


def test_chat_without_ref_answers_from_the_applied_state(applied_main: dict[str, str]) -> None:
    done = samops_chat("support", "#system", env=applied_main)
    assert done.returncode == 0, done.stderr
    assert MAIN_ROLE in done.stdout
    assert BRANCH_ROLE not in done.stdout


def test_chat_on_the_example_repository_previews_a_changed_system_prompt(
    repo: GitRepo, tmp_path: Path
) -> None:
    """The issue's "done when": a branch that changes a system prompt, previewed."""
    sha = branch(repo, "friendlier", lambda r: set_role(r, "You are the friendliest agent."))
    done = samops_chat(
        "support",
        "--ref",
        "friendlier",
        "--repo",
        str(repo.root),
        "--path",
        "manifests",
        "-",
        "--format",
        "json",
        env={"SAMOPS_DATA_DIR": str(tmp_path / "data")},
        stdin="#system",
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["revision"] == sha
    content = answer["completion"]["choices"][0]["message"]["content"]
    assert content.startswith("You are the friendliest agent.")


def test_chat_json_shows_the_plugins_and_tool_calls(branches: dict[str, str]) -> None:
    done = samops_chat(
        "support",
        "--ref",
        "preview",
        'Gobstoppers? call:calculator{"expression": "6 * 7"}',
        "--format",
        "json",
        env=branches,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["client"] == "support"
    assert answer["plugins_selected"] == ["everlasting_gobstopper"]
    (call,) = answer["tool_calls_made"]
    assert (call["name"], json.loads(call["result"])["result"]) == ("calculator", 42)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["support", "--ref", "broken", "hi"],
            f"manifests/clients/support.yaml:{TYPO_LINE}:5: spec.config.defaultTemprature",
            id="invalid-revision-with-positions",
        ),
        pytest.param(
            ["nobody", "--ref", "preview", "hi"],
            "known clients: lab_assistant, stackademy_advisor, support",
            id="unknown-client",
        ),
        pytest.param(
            ["support", "--ref", "no-such-branch", "hi"], "'no-such-branch'", id="unknown-ref"
        ),
    ],
)
def test_chat_refuses_with_a_clear_error(
    branches: dict[str, str], args: list[str], expected: str
) -> None:
    done = samops_chat(*args, env=branches)
    assert done.returncode == 1
    assert expected in done.stderr
    assert done.stdout == ""


def test_chat_names_the_applied_clients_for_an_unknown_one(applied_main: dict[str, str]) -> None:
    done = samops_chat("nobody", "hi", env=applied_main)
    assert done.returncode == 1
    assert "known clients: lab_assistant, stackademy_advisor, support" in done.stderr


def test_chat_json_error_has_the_projects_shape(branches: dict[str, str]) -> None:
    done = samops_chat("support", "--ref", "broken", "hi", "--format", "json", env=branches)
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "invalid_revision"
    assert (error["errors"][0]["file"], error["errors"][0]["line"]) == (
        "manifests/clients/support.yaml",
        TYPO_LINE,
    )


# --- the HTTP preview route -------------------------------------------------------------------

PREVIEW = "/api/v1/preview/llm-clients/{}/prompt/"


def post(
    process: DaemonProcess,
    body: dict[str, Any],
    key: str | None = ADMIN_KEY,
    client: str = "support",
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return process.request("POST", PREVIEW.format(client), json.dumps(body).encode(), headers)


def ask(ref: str, text: str = "#system") -> dict[str, Any]:
    return {"ref": ref, "messages": [{"role": "user", "content": text}]}


def content(body: dict[str, Any]) -> str:
    return str(body["data"]["choices"][0]["message"]["content"])


def start(args: list[str], folder: Path, *, admin: bool = True) -> DaemonProcess:
    folder.mkdir(parents=True, exist_ok=True)
    return DaemonProcess(
        [*args, *(["--admin-key-digest", digest_of(ADMIN_KEY)] if admin else [])],
        env={
            **OFFLINE,
            "SAMOPS_DATA_DIR": str(folder / "data"),
            "SAMOPS_DATABASE_URL": f"sqlite:///{folder / 'samops.sqlite3'}",
        },
        log=folder / "samops.log",
    )


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, str]]:
    """``samops run --repo`` with an admin key digest, main applied, branches not."""
    folder = tmp_path_factory.mktemp("preview")
    repo = GitRepo(folder / "repo")
    shutil.copytree(MANIFESTS, repo.root / "manifests")
    main = repo.commit("example manifests")
    with_branches(repo)
    process = start(["--repo", str(repo.root), "--path", "manifests"], folder)
    process.applied(main)
    yield process, repo.git("rev-parse", "preview")
    assert process.stop() == 0


def test_preview_route_answers_with_the_branch_while_main_keeps_serving(
    local_server: tuple[DaemonProcess, str],
) -> None:
    process, preview_sha = local_server
    code, body = post(process, ask("preview"))
    assert code == 200, body
    assert content(body).startswith(BRANCH_ROLE)
    assert (body["data"]["revision"], body["data"]["ref"]) == (preview_sha, "preview")
    assert body["api"] == "smarter.sh/v1"
    assert body["metadata"] == {"command": "preview", "thing": "LLMClient"}
    code, served = process.request(
        "POST",
        "/api/v1/llm-clients/support/prompt/",
        json.dumps(ask("ignored")).encode(),
        {"Content-Type": "application/json"},
    )
    assert code == 200, served
    assert content(served).startswith(MAIN_ROLE)


@pytest.mark.parametrize(
    ("body", "key", "client", "status", "code"),
    [
        pytest.param(ask("preview"), None, "support", 401, "missing_key", id="no-key"),
        pytest.param(ask("preview"), "samops_wrong", "support", 401, "invalid_key", id="wrong"),
        pytest.param(ask("no-such-branch"), ADMIN_KEY, "support", 404, "unknown_ref", id="ref"),
        pytest.param(ask("preview"), ADMIN_KEY, "nobody", 404, "unknown_client", id="client"),
        pytest.param(ask("--upload-pack=x"), ADMIN_KEY, "support", 400, "invalid_ref", id="opt"),
        pytest.param({"messages": ask("x")["messages"]}, ADMIN_KEY, "support", 400, "invalid_ref"),
        pytest.param(
            {"ref": "preview", "messages": [{"role": "user", "content": "x" * 2_000_000}]},
            ADMIN_KEY,
            "support",
            413,
            "body_too_large",
            id="too-large",
        ),
    ],
)
def test_preview_route_refuses_with_the_error_shape(
    local_server: tuple[DaemonProcess, str],
    body: dict[str, Any],
    key: str | None,
    client: str,
    status: int,
    code: str,
) -> None:
    answered, document = post(local_server[0], body, key, client)
    assert (answered, document["error"]["code"]) == (status, code), document
    assert document["error"]["message"]


def test_preview_route_reports_an_invalid_revision_with_positions(
    local_server: tuple[DaemonProcess, str],
) -> None:
    status, document = post(local_server[0], ask("broken"))
    assert status == 422, document
    assert document["error"]["code"] == "invalid_revision"
    first = document["error"]["errors"][0]
    assert (first["file"], first["line"], first["column"], first["path"]) == (
        "manifests/clients/support.yaml",
        TYPO_LINE,
        5,
        "spec.config.defaultTemprature",
    )


def test_preview_route_is_off_without_an_admin_key_digest(repo: GitRepo, tmp_path: Path) -> None:
    process = start(["--repo", str(repo.root), "--path", "manifests"], tmp_path, admin=False)
    try:
        status, document = post(process, ask("main"))
        assert (status, document["error"]["code"]) == (404, "preview_disabled")
    finally:
        assert process.stop() == 0


def test_preview_route_needs_git_for_a_directory_source(tmp_path: Path) -> None:
    process = start([str(MANIFESTS)], tmp_path)
    try:
        status, document = post(process, ask("main"))
        assert (status, document["error"]["code"]) == (409, "preview_needs_git")
    finally:
        assert process.stop() == 0


def test_preview_route_fetches_a_remote_branch_or_commit(tmp_path: Path) -> None:
    bare = tmp_path / "remote.git"
    work = GitRepo(tmp_path / "work")
    work.git("init", "--quiet", "--bare", str(bare))
    shutil.copytree(MANIFESTS, work.root / "manifests")
    work.commit("example manifests")
    work.git("push", "--quiet", str(bare), "main")
    process = start(["--url", bare.as_uri(), "--ref", "main", "--path", "manifests"], tmp_path)
    try:
        process.applied(work.git("rev-parse", "main"))
        sha = branch(work, "pushed-later", lambda r: set_role(r, BRANCH_ROLE))
        work.git("push", "--quiet", str(bare), "pushed-later")
        status, document = post(process, ask("pushed-later"))
        assert status == 200, document
        assert content(document).startswith(BRANCH_ROLE)
        assert document["data"]["revision"] == sha
        status, document = post(process, ask(sha))  # a full SHA is fetched too
        assert (status, document["data"]["revision"]) == (200, sha)
        status, document = post(process, ask("never-pushed"))
        assert (status, document["error"]["code"]) == (404, "unknown_ref")
        clone = next((tmp_path / "data/repos").iterdir())
        refs = subprocess.run(
            ["git", "for-each-ref", "refs/samops/"], cwd=clone, capture_output=True, text=True
        )
        assert refs.stdout == ""  # private refs are deleted after reading
    finally:
        assert process.stop() == 0


def test_preview_route_does_not_touch_the_applied_state(
    local_server: tuple[DaemonProcess, str],
) -> None:
    process, _ = local_server
    before = process.status()
    assert post(process, ask("preview"))[0] == 200
    after = process.status()
    assert (before["generation"], before["last_applied_revision"]) == (
        after["generation"],
        after["last_applied_revision"],
    )
