"""What budgets have spent: attachments and counters read back, for people and for serving.

Part of the store. Apply writes when a budget was attached to each resource
(``budget_attachments``, ``store/write.py``); the serving processes count what each resource
spends under each budget in ``quota_counters`` (``store/quotas.py``, ``serve/budgets.py``).
This module reads both: ``attachments`` for the serving snapshot, ``budget_status`` for
``describe`` (Smarter's ``status.resources`` block: spent this period and in total, percent,
locked or not and why).

Counter names (scopes), shared with ``serve/budgets.py``: ``budget:<budget>:<Kind>/<name>``
followed by ``:period`` (calendar periods) or ``:total`` (from the attachment on).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, select

from reconciler.sam.budget_kind import Budget, canonical_amount
from reconciler.store import schema
from reconciler.store.db import reading
from reconciler.store.quotas import add_periods, period_start, read_counter

ADVERB = {"hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly"}
Attachments = dict[tuple[str, str, str], dt.datetime]
"""(budget, resource kind, resource name) -> when it was attached."""


def budget_scope(budget: str, kind: str, name: str) -> str:
    return f"budget:{budget}:{kind}/{name}"


def periodic_scope(scope: str) -> str:
    return scope + ":period"


def total_scope(scope: str) -> str:
    return scope + ":total"


def expires_at(attached_at: dt.datetime, period: str, duration: int) -> dt.datetime | None:
    """When a budget with ``duration`` periods stops applying (None: never)."""
    return add_periods(attached_at, period, duration) if duration else None


def attachments(connection: Connection, budgets: Collection[str] | None = None) -> Attachments:
    """When each budget (of ``budgets``, or all) was attached to each of its resources."""
    table = schema.budget_attachments
    query = select(table)
    if budgets is not None:
        query = query.where(table.c.budget.in_(list(budgets)))
    return {
        (row.budget, row.resource_kind, row.resource_name): _aware(row.attached_at)
        for row in connection.execute(query)
    }


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _percent(spent: Decimal, limit: Decimal) -> float | None:
    return round(float(spent / limit * 100), 2) if limit else None


def budget_status(
    engine: Engine, budget: Budget, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Smarter's ``Budget.status.resources``: each resource's spending against the limits.
    Spent amounts include the slices the serving processes hold (leased, not yet settled): a
    resource is shown locked as soon as nothing is left to lease."""
    now = now or dt.datetime.now(dt.UTC)
    config = budget.spec.config
    with reading(engine) as connection:
        attached = attachments(connection, [budget.name])
        connection.rollback()
    shown = []
    for resource in budget.spec.resources:
        since = attached.get((budget.name, resource.kind, resource.name))
        scope = budget_scope(budget.name, resource.kind, resource.name)
        period = read_counter(engine, periodic_scope(scope), period_start(config.period, now))
        total = read_counter(engine, total_scope(scope), since) if since else None
        periodic_actual = period.used
        absolute_actual = total.used if total is not None else Decimal(0)
        ends = expires_at(since, config.period, config.duration) if since else None
        active = since is not None and (ends is None or now < ends)
        reason = None
        if config.periodic_limit and period.used + period.leased >= config.periodic_limit:
            reason = (
                f"the {ADVERB[config.period]} limit of {canonical_amount(config.periodic_limit)}"
            )
        if (
            total is not None
            and config.absolute_limit
            and total.used + total.leased >= config.absolute_limit
        ):
            reason = f"the absolute limit of {canonical_amount(config.absolute_limit)}"
        if reason is not None:
            reason += " is reached" + (
                " (warn only: not blocking)" if config.action == "warn" else ""
            )
        threshold = max(
            _percent(periodic_actual, config.periodic_limit) or 0,
            _percent(absolute_actual, config.absolute_limit) or 0,
        )
        shown.append(
            {
                "recordLocator": f"{resource.kind}/{resource.name}",
                "startDate": since.isoformat() if since else None,
                "expiresAt": ends.isoformat() if ends else None,
                "isActive": active,
                "isLocked": active and reason is not None and config.action == "block",
                "lockReason": reason,
                "periodicActual": canonical_amount(periodic_actual),
                "periodicPercent": _percent(periodic_actual, config.periodic_limit),
                "absoluteActual": canonical_amount(absolute_actual),
                "absolutePercent": _percent(absolute_actual, config.absolute_limit),
                "warning": bool(config.warning_threshold) and threshold >= config.warning_threshold,
            }
        )
    return shown
