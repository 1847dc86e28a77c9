"""Apply makes the database equal a revision, whole or not at all, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from reconciler.apply import apply_revision, plan_revision
from reconciler.errors import ApplyError
from reconciler.sam.revision import Revision
from reconciler.source import GitSource, validate_source
from reconciler.store import schema
from reconciler.store.read import read_actual
from reconciler.store.status import status_document as status
from tests.conftest import MANIFESTS, GitRepo, rendered, validate_text


@pytest.fixture
def example_repo(git_repo: GitRepo) -> GitRepo:
    shutil.copytree(MANIFESTS, git_repo.root / "manifests")
    git_repo.commit("example manifests")
    return git_repo


def at_head(repo: GitRepo) -> Revision:
    revision = validate_source(GitSource(repo.root, path="manifests"))
    assert revision.valid, revision.diagnostics
    return revision


@contextmanager
def counting_commits(engine: Engine) -> Iterator[list[int]]:
    commits: list[int] = []

    def on_commit(_connection: Any) -> None:
        commits.append(1)

    event.listen(engine, "commit", on_commit)
    try:
        yield commits
    finally:
        event.remove(engine, "commit", on_commit)


def edit_rename_remove(repo: GitRepo) -> None:
    """The issue's scenario: edit one plugin, rename another (and its reference), remove a
    client."""
    gobstopper = repo.root / "manifests/plugins/gobstopper.yaml"
    gobstopper.write_text(
        gobstopper.read_text().replace(
            "You are also a marketing agent", "You are also a cheerful marketing agent"
        )
    )
    api = repo.root / "manifests/plugins/stackademy-api.yaml"
    api.write_text(api.read_text().replace("name: stackademy_enrolment", "name: stackademy_seats"))
    client = repo.root / "manifests/clients/stackademy.yaml"
    client.write_text(client.read_text().replace("- stackademy_enrolment", "- stackademy_seats"))
    (repo.root / "manifests/clients/lab.yaml").unlink()
    repo.commit("edit, rename, remove")


def test_edit_rename_and_remove_land_exactly(engine: Engine, example_repo: GitRepo) -> None:
    first = apply_revision(engine, at_head(example_repo))
    assert (first.outcome, first.generation, first.plan.count("create")) == ("applied", 1, 12)
    edit_rename_remove(example_repo)
    revision = at_head(example_repo)

    plan = plan_revision(engine, revision)

    assert [(c.action, c.kind, c.name) for c in plan.changes] == [
        ("update", "Plugin", "everlasting_gobstopper"),
        ("create", "ApiPlugin", "stackademy_seats"),
        ("update", "LLMClient", "stackademy_advisor"),
        ("delete", "LLMClient", "lab_assistant"),
        ("delete", "ApiPlugin", "stackademy_enrolment"),
    ]
    assert [f.path for f in plan.changes[0].fields] == ["spec.prompt.systemRole"]
    assert [(f.path, f.before, f.after) for f in plan.changes[2].fields] == [
        (
            "spec.plugins",
            ["stackademy_catalogue", "stackademy_enrolment"],
            ["stackademy_catalogue", "stackademy_seats"],
        )
    ]

    applied = apply_revision(engine, revision)

    assert (applied.outcome, applied.generation) == ("applied", 2)
    document = status(engine)
    assert document["last_applied_revision"] == revision.revision
    assert document["last_sync"]["outcome"] == "applied"
    assert (
        document["last_sync"]["created"],
        document["last_sync"]["updated"],
        document["last_sync"]["deleted"],
    ) == (1, 2, 2)
    assert plan_revision(engine, revision).empty
    with counting_commits(engine) as commits:
        again = apply_revision(engine, revision)
    assert (again.outcome, again.generation, commits) == ("up-to-date", 2, [])


def test_rows_record_source_file_and_changing_revision(
    engine: Engine, example_repo: GitRepo
) -> None:
    first = at_head(example_repo)
    apply_revision(engine, first)
    edit_rename_remove(example_repo)
    second = at_head(example_repo)
    apply_revision(engine, second)
    with engine.connect() as connection:
        rows = {r.name: r for r in connection.execute(select(schema.plugins))}
    assert rows["everlasting_gobstopper"].revision == second.revision
    assert rows["stackademy_catalogue"].revision == first.revision
    assert rows["stackademy_catalogue"].file == "manifests/plugins/stackademy-sql.yaml"
    assert rows["stackademy_catalogue"].source == "default"


def test_invalid_revision_is_recorded_and_changes_nothing(
    engine: Engine, example_repo: GitRepo
) -> None:
    good = at_head(example_repo)
    apply_revision(engine, good)
    broken = example_repo.root / "manifests/clients/support.yaml"
    broken.write_text(broken.read_text().replace("defaultTemperature", "defaultTemprature"))
    bad_sha = example_repo.commit("typo")
    bad = validate_source(GitSource(example_repo.root, path="manifests"))
    with engine.connect() as connection:
        before = read_actual(connection)

    result = apply_revision(engine, bad)

    assert result.outcome == "invalid"
    with engine.connect() as connection:
        assert read_actual(connection) == before
    document = status(engine)
    assert document["last_applied_revision"] == good.revision
    assert document["last_attempted_revision"] == bad_sha
    assert document["last_sync"]["errors"][0]["path"] == "spec.config.defaultTemprature"
    assert document["generation"] == 1
    with counting_commits(engine) as commits:
        again = apply_revision(engine, bad)
    assert (again.outcome, again.ok, again.repeated, commits) == ("invalid", False, True, [])
    assert again.message == f"revision {bad_sha[:12]} was already attempted and was invalid: " + (
        "nothing written"
    )
    assert again.errors == bad.errors
    assert len(status(engine)["history"]) == 2  # no new sync row

    shutil.copy(MANIFESTS / "clients/support.yaml", broken)
    example_repo.commit("fix the typo")
    fixed = at_head(example_repo)
    assert apply_revision(engine, fixed).outcome == "unchanged"  # same content as applied
    assert status(engine)["last_applied_revision"] == fixed.revision


def test_deleting_every_client_is_refused_unless_allowed(
    engine: Engine, example_repo: GitRepo
) -> None:
    apply_revision(engine, at_head(example_repo))
    shutil.rmtree(example_repo.root / "manifests/clients")
    shutil.rmtree(example_repo.root / "manifests/budgets")  # it names a client
    example_repo.commit("remove every client")
    revision = at_head(example_repo)

    refused = apply_revision(engine, revision)

    assert refused.outcome == "refused"
    assert "--allow-empty" in refused.message
    with engine.connect() as connection:
        assert (
            connection.execute(select(func.count()).select_from(schema.llm_clients)).scalar() == 3
        )
    with counting_commits(engine) as commits:
        again = apply_revision(engine, revision)
    assert (again.outcome, again.ok, again.repeated, commits) == ("refused", False, True, [])
    assert "already attempted and was refused" in again.message
    assert "--allow-empty" in again.message
    assert len(status(engine)["history"]) == 2  # no new sync row
    allowed = apply_revision(engine, revision, allow_empty=True)
    assert allowed.outcome == "applied"
    assert allowed.plan.count("delete") == 4  # the three clients and the budget on one


def test_prune_only_touches_its_own_source(engine: Engine) -> None:
    secret = """\
        apiVersion: smarter.sh/v1
        kind: Secret
        metadata: {{name: {name}}}
        spec: {{config: {{valueFrom: {{env: X}}}}}}
        """
    apply_revision(engine, validate_text(secret.format(name="theirs")), source="team_b")
    apply_revision(engine, validate_text(secret.format(name="ours")), source="team_a")
    result = apply_revision(engine, validate_text(secret.format(name="ours_v2")), source="team_a")

    assert [(c.action, c.name) for c in result.plan.changes] == [
        ("create", "ours_v2"),
        ("delete", "ours"),
    ]
    with engine.connect() as connection:
        names = {r.name: r.source for r in connection.execute(select(schema.secrets))}
    assert names == {"theirs": "team_b", "ours_v2": "team_a"}


def test_plugin_changing_kind_keeps_its_clients(engine: Engine, example_repo: GitRepo) -> None:
    apply_revision(engine, at_head(example_repo))
    static = example_repo.root / "manifests/plugins/gobstopper.yaml"
    static.unlink()
    example_repo.write(
        "manifests/plugins/gobstopper-sql.yaml",
        """\
        apiVersion: smarter.sh/v1
        kind: SqlPlugin
        metadata: {name: everlasting_gobstopper}
        spec:
          selector: {directive: always}
          prompt: {systemRole: Query the sweets.}
          connection: stackademy_db
          sqlData: {sqlQuery: SELECT 1}
        """,
    )
    example_repo.commit("static to sql")
    revision = at_head(example_repo)

    result = apply_revision(engine, revision)

    assert result.outcome == "applied"
    with engine.connect() as connection:
        actual = read_actual(connection)
    assert ("SqlPlugin", "everlasting_gobstopper") in actual
    assert ("Plugin", "everlasting_gobstopper") not in actual
    assert actual[("LLMClient", "support")].fields["spec"]["plugins"] == ["everlasting_gobstopper"]
    assert plan_revision(engine, revision).empty


def test_new_revision_without_changes_keeps_the_generation(
    engine: Engine, example_repo: GitRepo
) -> None:
    apply_revision(engine, at_head(example_repo))
    example_repo.write("README.md", "docs only\n")
    sha = example_repo.commit("docs")
    result = apply_revision(engine, at_head(example_repo))
    assert (result.outcome, result.generation) == ("unchanged", 1)
    assert status(engine)["last_applied_revision"] == sha


def test_publish_happens_after_commit(engine: Engine, example_repo: GitRepo) -> None:
    seen: list[tuple[int, int]] = []

    def on_committed(generation: int) -> None:
        with engine.connect() as connection:  # a new connection sees the committed rows
            count = connection.execute(select(func.count()).select_from(schema.llm_clients))
            seen.append((generation, count.scalar_one()))

    apply_revision(engine, at_head(example_repo), on_committed=on_committed)
    apply_revision(engine, at_head(example_repo), on_committed=on_committed)
    assert seen == [(1, 3)]


KEY_FILE = "manifests/keys/stackademy-advisor-key.yaml"
CLIENT_FILE = "manifests/clients/stackademy.yaml"


def digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def replace_in(repo: GitRepo, path: str, old: str, new: str) -> None:
    target = repo.root / path
    assert old in target.read_text()
    target.write_text(target.read_text().replace(old, new))


def add_key(repo: GitRepo, name: str, digests: list[str]) -> None:
    repo.write(
        f"manifests/keys/{name}.yaml",
        f"""\
        apiVersion: smarter.sh/v1
        kind: SmarterAuthToken
        metadata: {{name: {name}}}
        spec: {{config: {{isActive: true, digest: [{", ".join(digests)}]}}}}
        """,
    )


def rename_key(repo: GitRepo) -> None:
    replace_in(repo, KEY_FILE, "name: stackademy_advisor_key", "name: advisor_key")
    replace_in(repo, CLIENT_FILE, "apiKey: stackademy_advisor_key", "apiKey: advisor_key")


def move_digest(repo: GitRepo) -> None:
    """The client's key gets a new digest; its old digest moves to another key."""
    (old,) = [
        line.split("- ")[1]
        for line in (repo.root / KEY_FILE).read_text().splitlines()
        if "- sha256:" in line
    ]
    replace_in(repo, KEY_FILE, old, digest("new"))
    add_key(repo, "another_key", [digest("other"), old])


@pytest.mark.parametrize(
    "change",
    [pytest.param(rename_key, id="rename"), pytest.param(move_digest, id="move-digest")],
)
def test_key_digest_changing_hands_in_one_commit_applies(
    engine: Engine, example_repo: GitRepo, change: Callable[[GitRepo], None]
) -> None:
    add_key(example_repo, "another_key", [digest("other")])
    example_repo.commit("another key")
    apply_revision(engine, at_head(example_repo))
    change(example_repo)
    example_repo.commit("a digest changes hands")
    revision = at_head(example_repo)

    result = apply_revision(engine, revision)

    assert result.outcome == "applied"
    assert plan_revision(engine, revision).empty
    with engine.connect() as connection:
        digests = connection.execute(select(schema.api_token_digests.c.digest)).scalars().all()
    assert len(digests) == len(set(digests))


def test_a_digest_listed_by_two_keys_is_an_error_naming_both() -> None:
    token = """\
        ---
        apiVersion: smarter.sh/v1
        kind: SmarterAuthToken
        metadata: {{name: {name}}}
        spec: {{config: {{isActive: true, digest: [{digests}]}}}}\n"""
    text = token.format(name="one", digests=digest("a")) + token.format(
        name="two", digests=f"{digest('b')}, {digest('a')}"
    )
    revision = validate_text(text)
    assert rendered(revision.errors) == [
        "m.yaml:10:115: spec.config.digest[1]: error: this key digest is also listed by the "
        "SmarterAuthToken 'one' at m.yaml:5"
    ]
    assert revision.errors[0].related == ("m.yaml:5",)


def test_a_refused_statement_is_a_sentence_without_sql_or_values(engine: Engine) -> None:
    shared = digest("shared")
    key = """\
        apiVersion: smarter.sh/v1
        kind: SmarterAuthToken
        metadata: {{name: {name}}}
        spec: {{config: {{isActive: true, digest: [{digest}]}}}}
        """
    apply_revision(engine, validate_text(key.format(name="ours", digest=shared)), source="a")
    theirs = validate_text(key.format(name="theirs", digest=shared))

    with pytest.raises(ApplyError) as raised:
        apply_revision(engine, theirs, source="b")

    message = str(raised.value)
    assert message.startswith(
        f"applying {theirs.revision[:12]} failed and changed nothing: the database refused the "
        "change: "
    )
    assert "another source" in message
    recorded = status(engine)["last_sync"]
    assert recorded["outcome"] == "failed"
    shown = message + str(recorded["errors"])
    for leak in (shared.removeprefix("sha256:"), "INSERT", "[SQL", "sqlalche.me", "parameters"):
        assert leak not in shown


def test_one_commit_changing_a_client_everywhere_is_one_update(
    engine: Engine, example_repo: GitRepo
) -> None:
    apply_revision(engine, at_head(example_repo))
    add_key(example_repo, "advisor_key_2", [digest("two")])
    replace_in(example_repo, CLIENT_FILE, "apiKey: stackademy_advisor_key", "apiKey: advisor_key_2")
    replace_in(example_repo, CLIENT_FILE, "defaultTemperature: 0.2", "defaultTemperature: 0.4")
    replace_in(example_repo, CLIENT_FILE, "    - stackademy_enrolment\n", "")
    replace_in(example_repo, CLIENT_FILE, "    - calculator", "    - calculator\n    - weather")
    example_repo.commit("client: key, config, plugins, functions")
    revision = at_head(example_repo)

    result = apply_revision(engine, revision)

    assert result.outcome == "applied"
    assert [(c.action, c.kind, c.name) for c in result.plan.changes] == [
        ("create", "SmarterAuthToken", "advisor_key_2"),
        ("update", "LLMClient", "stackademy_advisor"),
    ]
    assert [f.path for f in result.plan.changes[1].fields] == [
        "spec.config.defaultTemperature",
        "spec.plugins",
        "spec.functions",
        "spec.apiKey",
    ]
    assert plan_revision(engine, revision).empty
    with engine.connect() as connection:
        spec = read_actual(connection)[("LLMClient", "stackademy_advisor")].fields["spec"]
    assert (spec["apiKey"], spec["plugins"], spec["functions"]) == (
        "advisor_key_2",
        ["stackademy_catalogue"],
        ["calculator", "get_current_weather"],
    )
