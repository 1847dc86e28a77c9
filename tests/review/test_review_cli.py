"""``samops plan --base --head``: the review of a pull request between two real commits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from tests.conftest import MANIFESTS, GitRepo
from tests.review.test_risk_flags import STATIC

GOLDEN = Path(__file__).parent / "golden" / "example-review.md"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def replace(repo: GitRepo, path: str, old: str, new: str) -> None:
    target = repo.root / "manifests" / path
    text = target.read_text()
    assert old in text, (path, old)
    target.write_text(text.replace(old, new))


@pytest.fixture
def repo(git_repo: GitRepo) -> GitRepo:
    """The example manifests on main, and a branch ``feature`` that changes a system prompt,
    removes a client's key and adds a SQL plugin to another client."""
    shutil.copytree(MANIFESTS, git_repo.root / "manifests")
    git_repo.commit("example manifests")
    git_repo.git("checkout", "--quiet", "-b", "feature")
    replace(
        git_repo,
        "clients/support.yaml",
        "You are a friendly support agent for the Willy Wonka Chocolate Factory.",
        "You are a cheerful support agent for the Willy Wonka Chocolate Factory. "
        "Never promise refunds.",
    )
    replace(
        git_repo,
        "clients/support.yaml",
        "    - everlasting_gobstopper\n",
        "    - everlasting_gobstopper\n    - stackademy_catalogue\n",
    )
    replace(git_repo, "clients/stackademy.yaml", "  apiKey: stackademy_advisor_key\n", "")
    git_repo.commit("feature")
    git_repo.git("checkout", "--quiet", "main")
    return git_repo


def review(repo: GitRepo, *args: str, head: str = "feature") -> tuple[int, str]:
    return run(
        "plan",
        "--repo",
        str(repo.root),
        "--path",
        "manifests",
        "--base",
        "main",
        "--head",
        head,
        *args,
    )


def test_markdown_review_matches_the_golden_file(repo: GitRepo) -> None:
    code, output = review(repo, "--format", "markdown")
    assert code == 0
    for ref, placeholder in (("main", "BASE"), ("feature", "HEAD")):
        output = output.replace(repo.git("rev-parse", ref)[:12], placeholder)
    assert output == GOLDEN.read_text()


def test_json_review_has_the_changes_and_flags(repo: GitRepo) -> None:
    code, output = review(repo, "--format", "json")
    document = json.loads(output)
    assert code == 0
    assert document["valid"] is True
    assert document["head"] == repo.git("rev-parse", "feature")
    assert document["summary"] == {"create": 0, "update": 2, "delete": 0}
    assert document["risk"] == {"high": 2, "medium": 0, "low": 0}
    assert [(f["code"], f["name"]) for f in document["flags"]] == [
        ("client-public", "stackademy_advisor"),
        ("data-access-added", "support"),
    ]
    assert [(c["action"], c["name"]) for c in document["changes"]] == [
        ("update", "stackademy_advisor"),
        ("update", "support"),
    ]


@pytest.mark.parametrize(
    ("fail_on", "code"),
    [
        pytest.param(None, 0, id="no-fail-on"),
        pytest.param("high", 3, id="high-flag-fails-high"),
        pytest.param("medium", 3, id="high-flag-fails-medium"),
    ],
)
def test_fail_on_exit_codes(repo: GitRepo, fail_on: str | None, code: int) -> None:
    args = ("--fail-on", fail_on) if fail_on else ()
    assert review(repo, *args)[0] == code


def test_fail_on_ignores_flags_below_the_level(repo: GitRepo) -> None:
    repo.git("checkout", "--quiet", "-b", "warmer", "main")
    replace(repo, "clients/support.yaml", "defaultTemperature: 0.3", "defaultTemperature: 0.6")
    repo.commit("warmer")
    assert review(repo, "--fail-on", "medium", head="warmer")[0] == 0
    assert review(repo, "--fail-on", "low", head="warmer")[0] == 3
    assert review(repo, "--detailed-exitcode", head="warmer")[0] == 2
    assert review(repo, "--detailed-exitcode", head="main")[0] == 0


def test_invalid_head_lists_its_errors_and_exits_1(repo: GitRepo) -> None:
    repo.git("checkout", "--quiet", "-b", "broken", "main")
    replace(repo, "clients/support.yaml", "defaultTemperature", "defaultTemprature")
    repo.commit("typo")
    code, output = review(repo, "--format", "markdown", "--fail-on", "high", head="broken")
    assert code == 1
    assert "The head revision is invalid (1 error(s))" in output
    assert "manifests/clients/support.yaml:16:5: spec.config.defaultTemprature: error:" in output


def test_markdown_is_capped_with_a_note(repo: GitRepo) -> None:
    repo.git("checkout", "--quiet", "-b", "big", "main")
    for n in range(40):
        (repo.root / "manifests" / f"faq-{n}.yaml").write_text(STATIC.format(n=n))
    repo.commit("forty plugins")
    code, output = review(repo, "--format", "markdown", "--max-chars", "4000", head="big")
    assert code == 0
    assert len(output) <= 4000
    assert "Output capped at 4,000 characters:" in output
    assert "changed resources are not shown" in output


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("--head", "feature"), id="head-without-base"),
        pytest.param(("--base", "main", "--ref", "feature"), id="ref-in-review-mode"),
    ],
)
def test_review_usage_errors(repo: GitRepo, args: tuple[str, ...]) -> None:
    assert run("plan", "--repo", str(repo.root), *args)[0] == 2


def test_unknown_base_is_a_clear_failure(repo: GitRepo) -> None:
    code, output = run("plan", "--repo", str(repo.root), "--base", "nope", "--head", "main")
    assert code == 1
    assert "nope" in output
