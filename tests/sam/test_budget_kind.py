"""Smarter's Budget kind (``sam/budget_kind.py``): what it accepts, what it refuses so that no
limit is ever written and silently not enforced, and its references, with positions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from reconciler.sam.budget_kind import Budget
from tests.conftest import rendered, validate_text

CLIENT = """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: support}
spec: {config: {defaultModel: gpt-4o-mini}}
---
"""


def budget(resources: str, config: str = "{unit: cost, periodicLimit: 100}") -> str:
    return (
        CLIENT
        + f"""\
apiVersion: smarter.sh/v1
kind: Budget
metadata: {{name: monthly_cap, description: Support's cap.}}
spec:
  config: {config}
  resources:
{resources}"""
    )


def test_smarters_budget_is_accepted_with_its_defaults() -> None:
    revision = validate_text(
        budget(
            "    - {kind: LLMClient, name: support}\n    - {kind: Provider, name: openai}\n",
            config="{periodicLimit: '25.50', absoluteLimit: 1000}",
        )
    )
    assert revision.valid, rendered(revision.diagnostics)
    (found,) = [r.model for r in revision.resources if r.kind == "Budget"]
    assert isinstance(found, Budget)
    config = found.spec.config
    assert (config.unit, config.period, config.action, config.warning_threshold) == (
        "cost",
        "month",
        "block",
        80,
    )
    assert (config.periodic_limit, config.absolute_limit) == (Decimal("25.50"), Decimal(1000))
    dumped = found.model_dump(mode="json", by_alias=True)["spec"]["config"]
    assert (dumped["periodicLimit"], dumped["absoluteLimit"]) == ("25.5", "1000")


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        pytest.param(
            "    - {kind: Account, name: '3141-5926-5358'}\n",
            "m.yaml:12:14: spec.resources[0].kind: error: samops serves no spending through a "
            "Account, so a budget on it would never be enforced and is refused: list "
            "LLMClient, Provider, SmarterAuthToken resources",
            id="a-kind-samops-serves-no-spending-through",
        ),
        pytest.param(
            "    - {kind: LLMClinet, name: support}\n",
            "m.yaml:12:14: spec.resources[0].kind: error: unknown kind 'LLMClinet' (did you mean "
            "'LLMClient'?): a budget lists LLMClient, Provider, SmarterAuthToken resources (got "
            "'LLMClinet')",
            id="a-misspelt-kind",
        ),
        pytest.param(
            "    - {recordLocator: llmclient-rc2x}\n",
            "m.yaml:12:7: spec.resources[0]: error: samops names a budget's resources by kind "
            "and name, not by recordLocator: write 'kind: LLMClient' and 'name: <client>' in "
            "its place",
            id="a-record-locator",
        ),
        pytest.param(
            "    - {kind: LLMClient, name: suport}\n",
            "m.yaml:12:31: spec.resources[0].name: error: no LLMClient 'suport' in this revision",
            id="a-missing-client",
        ),
        pytest.param(
            "    - {kind: SmarterAuthToken, name: support}\n",
            "m.yaml:12:38: spec.resources[0].name: error: no SmarterAuthToken 'support' in this "
            "revision (there is a LLMClient of that name)",
            id="the-name-of-another-kind",
        ),
        pytest.param(
            "    - {kind: LLMClient, name: support}\n    - {kind: LLMClient, name: support}\n",
            "m.yaml:12:5: spec.resources: error: the LLMClient 'support' is listed twice",
            id="listed-twice",
        ),
    ],
)
def test_what_a_budget_refuses(resources: str, expected: str) -> None:
    revision = validate_text(budget(resources))
    found = rendered(revision.errors)
    assert len(found) == 1 and found[0].startswith(expected), found


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("{periodicLimit: -5}", "greater than or equal to 0"),
        ("{periodicLimit: lots}", "'lots' is not an amount"),
        ("{period: fortnight}", "'hour', 'day', 'week' or 'month'"),
        ("{action: shout}", "'block' or 'warn'"),
        ("{warningThreshold: 120}", "less than or equal to 100"),
        ("{unit: euros}", "'cost' or 'tokens'"),
    ],
)
def test_config_errors_are_sentences_with_positions(config: str, expected: str) -> None:
    revision = validate_text(budget("    - {kind: LLMClient, name: support}\n", config))
    (error,) = revision.errors
    assert expected in error.message, error.message
    assert error.position is not None and error.position.line == 10
