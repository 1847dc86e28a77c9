"""Apply makes the database equal a revision, whole or not at all, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from reconciler.apply import apply_revision, plan_revision
from reconciler.sam.revision import Revision, validate_source
from reconciler.source import GitSource
from reconciler.store import schema
from reconciler.store.read import read_actual
from reconciler.store.status import status_document as status
from tests.conftest import MANIFESTS, GitRepo, validate_text


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
    assert (first.outcome, first.generation, first.plan.count("create")) == ("applied", 1, 11)
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
        assert apply_revision(engine, bad).outcome == "up-to-date"
    assert commits == []

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
    example_repo.commit("remove every client")
    revision = at_head(example_repo)

    refused = apply_revision(engine, revision)

    assert refused.outcome == "refused"
    assert "--allow-empty" in refused.message
    with engine.connect() as connection:
        assert (
            connection.execute(select(func.count()).select_from(schema.llm_clients)).scalar() == 3
        )
    assert apply_revision(engine, revision).outcome == "up-to-date"
    allowed = apply_revision(engine, revision, allow_empty=True)
    assert allowed.outcome == "applied"
    assert allowed.plan.count("delete") == 3


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
