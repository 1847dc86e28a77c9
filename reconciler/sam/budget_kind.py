"""Smarter's ``Budget`` kind: spending limits on the clients, providers and keys it lists.

Part of Load/Validate, beside ``kinds.py`` (which lists every kind in ``KINDS``). The fields,
their defaults and their meaning are Smarter's (``smarter.models.sam.budget``); what samops adds
is what it refuses, so that no limit is ever written and silently not enforced:

- a resource of a kind samops serves no spending through (an Account, a plugin, ...), and a
  resource named by its ``recordLocator`` (samops names resources by kind and name);
- a ``SmarterAuthToken`` *is* accepted (a budget per key), although Smarter's own list of
  kinds does not have it: ``docs/smarter.md`` says so.

Each listed resource gets the budget's limits for itself (Smarter's ``ResourceConstraint``):
two clients under a budget of 10 dollars a month may spend 10 dollars a month each.
Enforcement is the serving processes' (``serve/budgets.py``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, field_validator, model_validator

from reconciler.sam.base import EmptyIfNull, OptionalText, Reference, SamModel, closest
from reconciler.sam.document import Document

BUDGET_KINDS = ("LLMClient", "Provider", "SmarterAuthToken")
"""What a budget may be enforced on here: every turn names one of each (its client, the
client's provider and, when a key was presented, the key's SmarterAuthToken)."""
SMARTER_BUDGET_KINDS = (
    "Account",
    "User",
    "ApiConnection",
    "SqlConnection",
    "LLMClient",
    "LLMHost",
    "LLMHostCompute",
    "MCPClient",
    "Orchestrator",
    "Provider",
    "Proxy",
    "Vectorsearch",
    "ApiPlugin",
    "SkillPlugin",
    "SqlPlugin",
    "StaticPlugin",
    "WebsearchPlugin",
    "ImageSearchPlugin",
)
"""The kinds Smarter's Budget accepts (``Budget.spec.resources.kind``)."""
MAX_LIMIT = Decimal(10) ** 15
PERIODS = ("hour", "day", "week", "month")
MESSAGE_MAX_CHARS = 1000


def canonical_amount(value: Decimal) -> str:
    """An amount as samops writes it: no exponent, no trailing zeros (``"12.5"``, ``"0"``)."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def _amount(value: Any) -> Any:
    """A limit written as a number or as a numeric string (Smarter takes both)."""
    if isinstance(value, bool):
        raise ValueError("expected an amount, e.g. 100 or '25.50'")
    if isinstance(value, int | float | str):
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{str(value)[:30]!r} is not an amount, e.g. 100 or '25.50'") from None
        if not amount.is_finite():
            raise ValueError("an amount must be a finite number")
        return amount
    return value


Amount = Annotated[
    Decimal,
    BeforeValidator(_amount),
    Field(ge=0, le=MAX_LIMIT),
    PlainSerializer(canonical_amount, return_type=str),
]
"""Dollars or tokens; 0 means no limit (Smarter's rule)."""


class BudgetConfig(SamModel):
    unit: Literal["cost", "tokens"] = Field(
        default="cost", description="What the limits count: cost in US dollars, or total tokens."
    )
    periodic_limit: Amount = Field(
        default=Decimal(0), description="The most one resource may spend in a period; 0: none."
    )
    absolute_limit: Amount = Field(
        default=Decimal(0),
        description="The most one resource may spend in total, from when the budget was "
        "attached to it; 0: none.",
    )
    period: Literal["hour", "day", "week", "month"] = Field(
        default="month", description="Calendar periods in UTC (a week starts on Monday)."
    )
    duration: Annotated[int, Field(ge=0, le=100_000)] = Field(
        default=0,
        description="Periods after attachment when the budget stops applying; 0: never.",
    )
    action: Literal["block", "warn"] = Field(
        default="block",
        description="block: refuse turns once a limit is reached; warn: only tell.",
    )
    warning_threshold: Annotated[int, Field(ge=0, le=100)] = Field(
        default=80, description="Percent of a limit at which a warning is logged; 0: never."
    )
    message: OptionalText = Field(
        default=None, description="What a refused caller is told (default: which limit)."
    )

    @field_validator("message")
    @classmethod
    def _short_message(cls, message: str | None) -> str | None:
        if message is not None and len(message) > MESSAGE_MAX_CHARS:
            raise ValueError(f"the message is over {MESSAGE_MAX_CHARS} characters")
        return message


class BudgetResource(SamModel):
    kind: str = Field(description="LLMClient, Provider or SmarterAuthToken.")
    name: Reference = Field(description="The resource's name.")
    account_number: OptionalText = Field(
        default=None, description="Smarter's; accepted and kept, informational here."
    )
    record_locator: OptionalText = Field(
        default=None, description="Smarter's; refused here: give kind and name."
    )

    @model_validator(mode="before")
    @classmethod
    def _named_by_kind_and_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("recordLocator") and not data.get("name"):
            raise ValueError(
                "samops names a budget's resources by kind and name, not by recordLocator: "
                "write 'kind: LLMClient' and 'name: <client>' in its place"
            )
        return data

    @field_validator("kind")
    @classmethod
    def _enforced_kind(cls, kind: str) -> str:
        if kind in BUDGET_KINDS:
            return kind
        if kind in SMARTER_BUDGET_KINDS:
            raise ValueError(
                f"samops serves no spending through a {kind}, so a budget on it would never be "
                f"enforced and is refused: list {', '.join(BUDGET_KINDS)} resources"
            )
        suggestion = closest(kind, BUDGET_KINDS)
        raise ValueError(
            f"unknown kind {kind!r}"
            + (f" (did you mean {suggestion!r}?)" if suggestion else "")
            + f": a budget lists {', '.join(BUDGET_KINDS)} resources"
        )


class BudgetSpec(SamModel):
    config: BudgetConfig
    resources: Annotated[list[BudgetResource], EmptyIfNull, Field(max_length=1000)] = Field(
        default=[], description="What the budget applies to; each gets the limits for itself."
    )

    @field_validator("resources")
    @classmethod
    def _listed_once(cls, resources: list[BudgetResource]) -> list[BudgetResource]:
        seen: set[tuple[str, str]] = set()
        for resource in resources:
            identity = (resource.kind, resource.name)
            if identity in seen:
                raise ValueError(f"the {resource.kind} {resource.name!r} is listed twice")
            seen.add(identity)
        return resources


class Budget(Document):
    KIND = "Budget"
    spec: BudgetSpec
