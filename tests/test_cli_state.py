"""``samops plan``, ``apply``, ``status``, ``get``, ``describe`` and ``db upgrade``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import cli
from tests.conftest import MANIFESTS


def run(database_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, list(args), env={"SAMOPS_DATABASE_URL": database_url}, catch_exceptions=False
    )
    return result.exit_code, result.output


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    return Path(shutil.copytree(MANIFESTS, tmp_path / "manifests"))


@pytest.fixture
def empty_schema(database_url: str) -> str:
    """A database with samops' schema and no resources (reading commands create nothing)."""
    assert run(database_url, "db", "upgrade")[0] == 0
    return database_url


def test_plan_detailed_exitcode(empty_schema: str, manifests: Path) -> None:
    database_url = empty_schema
    assert run(database_url, "plan", str(manifests), "--detailed-exitcode")[0] == 2
    assert run(database_url, "apply", str(manifests))[0] == 0
    assert run(database_url, "plan", str(manifests), "--detailed-exitcode") == (
        0,
        "No changes: the database matches the revision.\n",
    )
    (manifests / "clients" / "support.yaml").write_text("kind: Nope\n")
    code, output = run(database_url, "plan", str(manifests), "--detailed-exitcode")
    assert code == 1
    assert "unknown kind 'Nope'" in output


def test_apply_dry_run_changes_nothing(empty_schema: str, manifests: Path) -> None:
    database_url = empty_schema
    code, output = run(database_url, "apply", str(manifests), "--dry-run")
    assert code == 0
    assert output.splitlines()[-1] == "Plan: 12 to create, 0 to update, 0 to delete."
    assert json.loads(run(database_url, "status", "--format", "json")[1])["generation"] == 0


def test_apply_then_status_get_and_describe(database_url: str, manifests: Path) -> None:
    code, output = run(database_url, "apply", str(manifests))
    assert code == 0
    assert output.splitlines()[-1].endswith(": generation 1.")
    code, output = run(database_url, "apply", str(manifests))
    assert output.strip().endswith("is already applied (generation 1); nothing written.")

    document = json.loads(run(database_url, "status", "--format", "json")[1])
    assert set(document) == {
        "version",
        "source",
        "last_applied_revision",
        "last_attempted_revision",
        "generation",
        "updated_at",
        "suspended",
        "suspended_reason",
        "last_sync",
        "history",
        "resources",
    }
    assert document["resources"]["LLMClient"] == 3
    assert document["last_sync"]["outcome"] == "applied"
    assert "generation:        1" in run(database_url, "status")[1]

    code, table = run(database_url, "get", "llmclient")
    assert code == 0
    assert table.splitlines()[0].split() == ["NAME", "PROVIDER", "MODEL", "API", "KEY", "FILE"]
    assert [line.split()[0] for line in table.splitlines()[1:]] == [
        "lab_assistant",
        "stackademy_advisor",
        "support",
    ]

    code, described = run(database_url, "describe", "SqlPlugin", "Stackademy-Catalogue")
    assert code == 0
    assert yaml.safe_load(described)["metadata"]["name"] == "stackademy_catalogue"


def test_describe_output_reapplies_as_an_empty_plan(database_url: str, manifests: Path) -> None:
    run(database_url, "apply", str(manifests))
    target = manifests / "clients" / "stackademy.yaml"
    target.write_text(run(database_url, "describe", "LLMClient", "stackademy_advisor")[1])
    assert run(database_url, "plan", str(manifests), "--detailed-exitcode")[0] == 0


def test_a_budgets_description_shows_its_status_and_reapplies(
    database_url: str, manifests: Path
) -> None:
    run(database_url, "apply", str(manifests))
    code, text = run(database_url, "describe", "Budget", "support_daily")
    assert code == 0
    described = yaml.safe_load(text)
    (resource,) = described["status"]["resources"]
    assert resource["recordLocator"] == "LLMClient/support"
    assert (resource["periodicActual"], resource["absoluteActual"]) == ("0", "0")
    assert (resource["isActive"], resource["isLocked"], resource["lockReason"]) == (
        True,
        False,
        None,
    )
    assert resource["startDate"] is not None and resource["expiresAt"] is None
    (manifests / "budgets" / "support.yaml").write_text(text)
    assert run(database_url, "plan", str(manifests), "--detailed-exitcode")[0] == 0


def test_invalid_apply_exits_1_and_status_shows_the_errors(
    database_url: str, manifests: Path
) -> None:
    run(database_url, "apply", str(manifests))
    support = manifests / "clients" / "support.yaml"
    support.write_text(support.read_text().replace("defaultModel", "defaultModle"))
    code, output = run(database_url, "apply", str(manifests))
    assert code == 1
    assert "is invalid: nothing applied; the last good state stays." in output
    status = run(database_url, "status")[1]
    assert "last sync:         invalid" in status
    assert "support.yaml:12:5: unknown key 'defaultModle'" in status


def history(database_url: str) -> list[str]:
    document = json.loads(run(database_url, "status", "--format", "json")[1])
    return [sync["outcome"] for sync in document["history"]]


def test_applying_an_invalid_revision_again_still_fails(database_url: str, manifests: Path) -> None:
    run(database_url, "apply", str(manifests))
    (manifests / "clients" / "support.yaml").write_text("kind: Nope\n")
    first = run(database_url, "apply", str(manifests))
    again = run(database_url, "apply", str(manifests))
    assert (first[0], again[0]) == (1, 1)
    assert "is invalid: nothing applied" in first[1]
    assert "was already attempted and was invalid: nothing written" in again[1]
    assert "already applied" not in again[1]
    assert history(database_url) == ["invalid", "applied"]  # the second attempt wrote nothing


def test_apply_refuses_to_delete_every_client_until_allowed(
    database_url: str, manifests: Path
) -> None:
    run(database_url, "apply", str(manifests))
    shutil.rmtree(manifests / "clients")
    shutil.rmtree(manifests / "budgets")  # it names a client
    code, output = run(database_url, "apply", str(manifests))
    assert code == 1
    assert "would delete every LLM client (pass --allow-empty" in output
    code, output = run(database_url, "apply", str(manifests))
    assert code == 1
    assert "already attempted and was refused" in output and "--allow-empty" in output
    assert history(database_url) == ["refused", "applied"]
    code, output = run(database_url, "apply", str(manifests), "--allow-empty")
    assert code == 0
    assert "Plan: 0 to create, 0 to update, 4 to delete." in output


def test_plan_is_the_same_from_any_working_directory(
    empty_schema: str, manifests: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = empty_schema
    absolute = run(database_url, "plan", str(manifests), "--format", "json")[1]
    monkeypatch.chdir(manifests.parent)
    relative = run(database_url, "plan", "manifests", "--format", "json")[1]
    assert json.loads(absolute) == json.loads(relative)
    assert json.loads(absolute)["changes"][0]["file"] == "secrets/stackademy-api-token.yaml"
    assert run(database_url, "apply", str(manifests))[0] == 0
    monkeypatch.chdir(manifests)
    assert run(database_url, "plan", ".", "--detailed-exitcode") == (
        0,
        "No changes: the database matches the revision.\n",
    )


def test_describe_unknown_resource_is_an_error(empty_schema: str) -> None:
    database_url = empty_schema
    code, output = run(database_url, "describe", "Plugin", "nope")
    assert code == 1
    assert "there is no Plugin named 'nope'" in output


def test_unreachable_database_is_a_sentence(tmp_path: Path) -> None:
    code, output = run("postgresql://nobody@127.0.0.1:1/none", "status")
    assert code == 1
    assert output.startswith("error: cannot use the database postgresql://nobody@127.0.0.1:1/")
    assert "Traceback" not in output


def test_db_upgrade(database_url: str) -> None:
    code, output = run(database_url, "db", "upgrade")
    assert code == 0
    assert output.strip().endswith(": schema up to date")
