"""Each risk flag is raised by its own kind of change, and by nothing else."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.review import FLAG_LEVELS, review_revisions
from reconciler.review_render import render_review_markdown, review_to_json
from tests.review.conftest import Files, edit, revision_of

STACKADEMY = "clients/stackademy.yaml"
SUPPORT = "clients/support.yaml"
KEY = "keys/stackademy-advisor-key.yaml"
BUDGET = "budgets/support.yaml"
DIGEST = "sha256:c9d19165d2e87c677f3de1a62f06b749164ce2eb79e6d5aaf85b56bf072e2e45"
OTHER_DIGEST = "sha256:" + "ab" * 32
SPARE_KEY = f"""\
apiVersion: smarter.sh/v1
kind: SmarterAuthToken
metadata: {{name: spare_key}}
spec:
  config: {{isActive: true, digest: ["{OTHER_DIGEST}"]}}
"""
STATIC = """\
apiVersion: smarter.sh/v1
kind: Plugin
metadata: {{name: faq_{n}, pluginClass: static}}
spec:
  selector: {{directive: always}}
  prompt: {{systemRole: Answer from the FAQ.}}
  data: {{staticData: {{hours: 9 to 5}}}}
"""
Change = Callable[[Files], tuple[Files, Files]]


def head_only(path: str, old: str, new: str) -> Change:
    return lambda files: (files, edit(files, path, old, new))


def with_spare_key(change: Change) -> Change:
    return lambda files: change({**files, "keys/spare.yaml": SPARE_KEY})


def deployed_support_removed(files: Files) -> tuple[Files, Files]:
    base = edit(
        files,
        SUPPORT,
        "    defaultMaxTokens: 1024\n",
        "    defaultMaxTokens: 1024\n    deployed: true\n",
    )
    return base, {p: t for p, t in base.items() if p not in (SUPPORT, BUDGET)}


def budget_removed(files: Files) -> tuple[Files, Files]:
    return files, {p: t for p, t in files.items() if p != BUDGET}


def many_plugins_pruned(files: Files) -> tuple[Files, Files]:
    base = {**files, **{f"faq/{n}.yaml": STATIC.format(n=n) for n in range(12)}}
    return base, files


def token_sent_to_a_new_host(files: Files) -> tuple[Files, Files]:
    """Issue 12, item 2: a new connection that sends an existing secret somewhere else."""
    connection = files["connections/stackademy-api.yaml"]
    copy = connection.replace("name: stackademy_api", "name: collector").replace(
        "http://127.0.0.1:8080/demo/stackademy/", "https://collector.example.net/"
    )
    return files, {**files, "connections/collector.yaml": copy}


CASES = [
    pytest.param(token_sent_to_a_new_host, {"secret-new-destination"}, id="secret-new-host"),
    pytest.param(
        head_only(SUPPORT, "friendly support agent", "cheerful support agent"),
        set(),
        id="system-prompt-edit-is-not-a-risk",
    ),
    pytest.param(
        head_only(STACKADEMY, "  apiKey: stackademy_advisor_key\n", ""),
        {"client-public"},
        id="key-removed-from-client",
    ),
    pytest.param(
        with_spare_key(head_only("keys/spare.yaml", "isActive: true", "isActive: false")),
        {"key-revoked"},
        id="key-deactivated",
    ),
    pytest.param(
        head_only(KEY, DIGEST, OTHER_DIGEST),
        {"key-rotated"},
        id="key-rotated",
    ),
    pytest.param(
        head_only(KEY, f"    - {DIGEST}\n", f"    - {DIGEST}\n    - {OTHER_DIGEST}\n"),
        {"key-rotation-started"},
        id="key-digest-added",
    ),
    pytest.param(
        head_only(
            SUPPORT,
            "    - everlasting_gobstopper\n",
            "    - everlasting_gobstopper\n    - stackademy_catalogue\n",
        ),
        {"data-access-added"},
        id="sql-plugin-added-to-client",
    ),
    pytest.param(
        head_only(
            SUPPORT,
            "    - everlasting_gobstopper\n",
            "    - everlasting_gobstopper\n    - stackademy_enrolment\n",
        ),
        {"data-access-added"},
        id="api-plugin-added-to-client",
    ),
    pytest.param(
        head_only(
            "connections/stackademy-db.yaml",
            "database: stackademy.sqlite3",
            "database: other.sqlite3",
        ),
        {"connection-target"},
        id="sql-connection-moved",
    ),
    pytest.param(
        head_only(
            "connections/stackademy-api.yaml", "http://127.0.0.1:8080/", "https://api.example.com/"
        ),
        {"connection-target", "secret-new-destination"},  # its token now goes there too
        id="api-connection-moved",
    ),
    pytest.param(
        head_only(SUPPORT, "defaultModel: gpt-4o-mini", "defaultModel: gpt-4o"),
        {"model-changed"},
        id="model-changed",
    ),
    pytest.param(
        head_only("clients/lab.yaml", "provider: local_model", "provider: openai"),
        {"model-changed"},
        id="provider-changed",
    ),
    pytest.param(
        head_only(
            "providers/local-model.yaml",
            "http://127.0.0.1:8080/demo/local-model/v1",
            "http://10.0.0.9:11434/v1",
        ),
        {"model-changed"},
        id="provider-endpoint-changed",
    ),
    pytest.param(
        head_only(SUPPORT, "defaultTemperature: 0.3", "defaultTemperature: 0.9"),
        {"temperature-raised"},
        id="temperature-raised",
    ),
    pytest.param(
        head_only(SUPPORT, "defaultTemperature: 0.3", "defaultTemperature: 0.1"),
        set(),
        id="temperature-lowered-is-not-a-risk",
    ),
    pytest.param(
        head_only(
            "secrets/stackademy-api-token.yaml",
            "valueFrom:\n      env: STACKADEMY_API_TOKEN",
            "value: hunter2",
        ),
        {"plaintext-secret"},
        id="plaintext-secret",
    ),
    pytest.param(
        deployed_support_removed,
        {"deployed-client-removed", "budget-removed"},  # its budget goes with it
        id="deployed-client-removed",
    ),
    pytest.param(budget_removed, {"budget-removed"}, id="budget-removed"),
    pytest.param(
        head_only(BUDGET, "  resources:\n    - kind: LLMClient\n      name: support\n", ""),
        {"budget-removed"},
        id="budget-detached-from-its-client",
    ),
    pytest.param(
        head_only(BUDGET, "periodicLimit: 5", "periodicLimit: 50"),
        {"budget-weakened"},
        id="budget-raised-tenfold",
    ),
    pytest.param(
        head_only(BUDGET, "absoluteLimit: 100", "absoluteLimit: 0"),
        {"budget-weakened"},
        id="budget-limit-removed",
    ),
    pytest.param(
        head_only(BUDGET, "action: block", "action: warn"),
        {"budget-weakened"},
        id="budget-no-longer-blocks",
    ),
    pytest.param(
        head_only(BUDGET, "periodicLimit: 5", "periodicLimit: 8"),
        set(),
        id="budget-raised-a-little-is-not-a-risk",
    ),
    pytest.param(many_plugins_pruned, {"mass-prune"}, id="many-resources-pruned"),
]


@pytest.mark.parametrize(("change", "expected"), CASES)
def test_each_flag_is_raised_by_its_own_change(
    example: Files, change: Change, expected: set[str]
) -> None:
    base, head = change(example)
    review = review_revisions(revision_of(base), revision_of(head, allow_plaintext_secrets=True))
    assert review.head_valid, [d.render() for d in review.head_errors]
    assert not review.plan.empty
    assert {flag.code for flag in review.flags} == expected


def test_flags_name_the_resource_and_say_why(example: Files) -> None:
    base, head = head_only(STACKADEMY, "  apiKey: stackademy_advisor_key\n", "")(example)
    (flag,) = review_revisions(revision_of(base), revision_of(head)).flags
    assert (flag.level, flag.kind, flag.name) == ("high", "LLMClient", "stackademy_advisor")
    assert flag.reason == (
        "anyone who can reach the server may use it: its spec.apiKey "
        "('stackademy_advisor_key') was removed"
    )


def test_plaintext_secret_flag_never_shows_the_value(example: Files) -> None:
    base, head = head_only(
        "secrets/stackademy-api-token.yaml",
        "valueFrom:\n      env: STACKADEMY_API_TOKEN",
        "value: hunter2-very-secret",
    )(example)
    review = review_revisions(revision_of(base), revision_of(head, allow_plaintext_secrets=True))
    assert "hunter2" not in render_review_markdown(review)
    assert "hunter2" not in str(review_to_json(review))


def test_invalid_head_has_errors_and_no_plan(example: Files) -> None:
    head = edit(example, SUPPORT, "defaultTemperature: 0.3", "defaultTemprature: 0.3")
    review = review_revisions(revision_of(example), revision_of(head))
    assert not review.head_valid
    assert review.plan.empty and not review.flags
    assert [d.location() for d in review.head_errors] == [f"{SUPPORT}:16:5"]


def test_new_destination_flag_names_the_host_and_the_sender(example: Files) -> None:
    base, head = token_sent_to_a_new_host(example)
    (flag,) = review_revisions(revision_of(base), revision_of(head)).flags
    assert (flag.level, flag.kind, flag.name) == ("high", "Secret", "stackademy_api_token")
    assert flag.reason.startswith(
        "this secret's value starts being sent to collector.example.net (ApiConnection collector)"
    )


def test_the_review_docs_list_every_flag_with_its_level() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "review.md").read_text(encoding="utf-8")
    documented = dict(re.findall(r"^\| `([a-z-]+)` \| (high|medium|low) \|", docs, re.M))
    assert documented == FLAG_LEVELS
