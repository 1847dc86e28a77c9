"""What chat cost, summed from the ``chat_usage`` table: ``samops usage`` (``cli/usage.py``).

Part of the readers of the database. The serving processes write one row per chat turn
(``serve/usage.py``); this sums them by client, key and model over a window. Unknown counts
stay unknown: a group whose turns include one without token counts (or without a price) says
how many, and its sums cover only the known turns.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, case, func, select

from reconciler.store import schema
from reconciler.store.db import reading

_SPAN = re.compile(r"^(\d{1,6})([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """``24h``, ``30m``, ``7d``, ``2w`` before ``now``, or an ISO date or time (UTC unless it
    says); ``ValueError`` with a sentence otherwise."""
    match = _SPAN.match(text.strip())
    if match is not None:
        try:
            return now - dt.timedelta(**{_UNITS[match[2]]: int(match[1])})
        except OverflowError:
            raise ValueError(f"{text!r} reaches back before the year 1") from None
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time span or a date (hint: 24h, 30m, 7d, 2w, "
            "2026-11-01 or 2026-11-01T09:00:00+00:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def usage_summary(
    engine: Engine,
    *,
    since: dt.datetime,
    until: dt.datetime,
    client: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Turns, tokens and cost by client, key and model between ``since`` and ``until``."""
    usage = schema.chat_usage
    known = usage.c.total_tokens.is_not(None)
    priced = usage.c.cost_usd.is_not(None)
    query = (
        select(
            usage.c.client,
            usage.c.key_name,
            usage.c.model,
            func.count().label("turns"),
            func.sum(case((usage.c.outcome == "failed", 1), else_=0)).label("failed"),
            func.sum(case((known, 0), else_=1)).label("tokens_unknown"),
            func.sum(usage.c.prompt_tokens).label("prompt_tokens"),
            func.sum(usage.c.completion_tokens).label("completion_tokens"),
            func.sum(usage.c.total_tokens).label("total_tokens"),
            func.sum(case((priced, 0), else_=1)).label("cost_unknown"),
            func.sum(usage.c.cost_usd).label("cost_usd"),
        )
        .where(usage.c.at >= since, usage.c.at < until)
        .group_by(usage.c.client, usage.c.key_name, usage.c.model)
        .order_by(usage.c.client, usage.c.key_name, usage.c.model)
    )
    if client is not None:
        query = query.where(usage.c.client == client)
    if key is not None:
        query = query.where(usage.c.key_name == key)
    with reading(engine) as connection:
        rows = [dict(row) for row in connection.execute(query).mappings()]
        connection.rollback()
    for row in rows:
        row["cost_usd"] = _money(row["cost_usd"])
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            row[name] = int(row[name] or 0)
        for name in ("turns", "failed", "tokens_unknown", "cost_unknown"):
            row[name] = int(row[name])
    totals: dict[str, Any] = {
        name: sum(row[name] for row in rows)
        for name in (
            "turns",
            "failed",
            "tokens_unknown",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "cost_unknown",
        )
    }
    totals["cost_usd"] = _money(sum((Decimal(r["cost_usd"]) for r in rows), Decimal(0)))
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "client": client,
        "key": key,
        "rows": rows,
        "totals": totals,
    }


def _money(value: Any) -> str:
    """US dollars as text with six decimals (JSON has no decimal type; floats would round)."""
    return f"{Decimal(value or 0):.6f}"
