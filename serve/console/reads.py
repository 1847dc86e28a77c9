"""What the console shows: overview, history, resources and reviews, as JSON.

Beside the serve stage, reading only what ``samops status``, ``get`` and ``review`` read: the
status document (``reconciler/store/status.py``), the processes' heartbeats
(``serve/heartbeat.py``), the applied rows with the one reference graph
(``reconciler/store/read.py``, ``reconciler/sam/references.py``), usage and budgets, and reviews
of revisions read from git objects (``reconciler/review.py``). Every function is blocking (the
routes run them in a worker thread) and returns JSON-ready data in which no secret value can
appear: rows hold secrets as where they come from or as fingerprints, and every digest is
shortened to 12 hex digits before it leaves.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar, cast

from sqlalchemy import Engine, select

from reconciler.api import (
    Identity,
    RefError,
    RefReader,
    ResourceState,
    review_revisions,
    review_to_json,
)
from reconciler.sam.references import targets
from reconciler.sam.revision import Revision
from reconciler.store import schema
from reconciler.store.db import reading
from reconciler.store.read import read_actual, read_state
from reconciler.store.status import status_document, sync_json
from reconciler.store.usage_report import usage_summary
from serve.heartbeat import fleet

DIGEST = re.compile(r"\b(sha(?:256|512)):([0-9a-f]{12})[0-9a-f]+\b")
SYNC_ERRORS_SHOWN = 200
HISTORY_PAGE = 50
T = TypeVar("T")


class NotFound(Exception):
    """The thing asked for does not exist (the route answers 404 with this sentence)."""


class Unavailable(Exception):
    """The thing asked for cannot be computed here (409 with this sentence)."""


def short_digests(value: T) -> T:
    """``value`` with every ``sha256:<hex>`` shortened to its first 12 hex digits."""
    return cast(T, _shortened(value))


def _shortened(value: Any) -> Any:
    if isinstance(value, str):
        return DIGEST.sub(r"\1:\2…", value)
    if isinstance(value, list):
        return [_shortened(v) for v in value]
    if isinstance(value, dict):
        return {k: _shortened(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class Followed:
    """What the overview says is followed."""

    source: str
    ref: str | None
    path: str


def overview(engine: Engine, followed: Followed | None) -> dict[str, Any]:
    document = status_document(engine, history=1)
    document["followed"] = (
        None
        if followed is None
        else {"source": followed.source, "ref": followed.ref, "path": followed.path}
    )
    document["processes"] = fleet(engine)
    return short_digests(document)


def applied_revision(engine: Engine) -> str | None:
    with reading(engine) as connection:
        revision = read_state(connection).last_applied_revision
        connection.rollback()
    return revision


def history(engine: Engine, before: int | None, limit: int = HISTORY_PAGE) -> dict[str, Any]:
    syncs = schema.syncs
    query = select(syncs).order_by(syncs.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(syncs.c.id < before)
    with reading(engine) as connection:
        rows = [sync_json(row) for row in connection.execute(query).mappings()]
        connection.rollback()
    return {"syncs": short_digests(rows), "more": len(rows) == limit}


def sync_detail(engine: Engine, sync_id: int, reader: RefReader | None) -> dict[str, Any]:
    """A sync with all its errors and, for an applied one, its plan: the review of its revision
    against the revision applied before it, read from git (``plan_unavailable`` says why
    not)."""
    syncs = schema.syncs
    with reading(engine) as connection:
        row = connection.execute(select(syncs).where(syncs.c.id == sync_id)).mappings().first()
        before = None
        if row is not None:
            before = connection.execute(
                select(syncs.c.revision)
                .where(syncs.c.id < sync_id, syncs.c.outcome == "applied")
                .order_by(syncs.c.id.desc())
                .limit(1)
            ).scalar()
        connection.rollback()
    if row is None:
        raise NotFound(f"there is no sync numbered {sync_id}")
    detail = sync_json(row) | {"errors": row["errors"][:SYNC_ERRORS_SHOWN], "base": before}
    detail["plan"], detail["plan_unavailable"] = None, None
    if row["outcome"] == "applied":
        if reader is None:
            detail["plan_unavailable"] = "this server follows no git repository"
        else:
            try:
                detail["plan"] = review(reader, before, row["revision"])
            except (RefError, Unavailable) as exc:
                detail["plan_unavailable"] = str(exc)
    return short_digests(detail)


def review(reader: RefReader | None, base: str | None, head: str) -> dict[str, Any]:
    """The review of merging ``head`` onto ``base`` (None: onto nothing, a first apply)."""
    if reader is None:
        raise Unavailable("this server follows no git repository, so it has no revisions")
    try:
        head_revision = reader.read(head)
        base_revision = reader.read(base) if base else None
    except RefError as exc:
        raise Unavailable(str(exc)) from exc
    if base_revision is None:
        base_revision = Revision("")
    return short_digests(review_to_json(review_revisions(base_revision, head_revision)))


# --- resources ----------------------------------------------------------------------------


def _node(identity: Identity) -> dict[str, str]:
    return {"kind": identity[0], "name": identity[1]}


def _refers(state: ResourceState, known: Mapping[Identity, ResourceState]) -> list[Identity]:
    seen: list[Identity] = []
    for target in targets(state.kind, state.fields):
        if target in known and target not in seen:
            seen.append(target)
    return seen


def _closure(start: Identity, edges: Mapping[Identity, list[Identity]]) -> list[list[str]]:
    """Every edge reachable from ``start`` (what the client depends on, transitively)."""
    shown, todo, seen = [], [start], {start}
    while todo:
        node = todo.pop()
        for target in edges.get(node, ()):
            shown.append([*node, *target])
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return shown


def _usage_by_client(engine: Engine, now: dt.datetime) -> dict[str, dict[str, Any]]:
    """Turns, tokens and cost of each client over the last 24 hours."""
    summary = usage_summary(engine, since=now - dt.timedelta(hours=24), until=now)
    found: dict[str, dict[str, Any]] = {}
    for row in summary["rows"]:
        mine = found.setdefault(
            row["client"], {"turns": 0, "total_tokens": 0, "cost": Decimal(0), "unknown": 0}
        )
        mine["turns"] += row["turns"]
        mine["total_tokens"] += row["total_tokens"]
        mine["cost"] += Decimal(row["cost_usd"])
        mine["unknown"] += row["cost_unknown"]
    return {
        client: {
            "turns": u["turns"],
            "total_tokens": u["total_tokens"],
            "cost_usd": str(u["cost"]),
            "cost_unknown_turns": u["unknown"],
        }
        for client, u in found.items()
    }


PLUGIN_KINDS = frozenset({"Plugin", "SqlPlugin", "ApiPlugin"})


def _key(token: ResourceState) -> dict[str, Any]:
    """A key as the console shows it: name, active, and its digests (shortened on the way
    out, ``short_digests``)."""
    config = token.fields.get("spec", {}).get("config", {})
    return {
        "name": token.name,
        "active": config.get("isActive"),
        "digests": list(config.get("digest") or []),
    }


def resources(engine: Engine, now: dt.datetime | None = None) -> dict[str, Any]:
    """Every applied resource (kind, name, file, fields) and what it refers to; for each
    client its dependencies (the edges reachable from it, and the keys and budgets that name
    it or its provider) and its usage over the last 24 hours."""
    now = now or dt.datetime.now(dt.UTC)
    with reading(engine) as connection:
        states = read_actual(connection)
        connection.rollback()
    edges = {identity: _refers(state, states) for identity, state in states.items()}
    referrers: dict[Identity, list[Identity]] = {}
    for source, found in edges.items():
        for target in found:
            referrers.setdefault(target, []).append(source)
    by_client = _usage_by_client(engine, now)
    clients = []
    for (kind, name), state in sorted(states.items()):
        if kind != "LLMClient":
            continue
        depends = _closure((kind, name), edges)
        mine = [(kind, name), *[(d[2], d[3]) for d in depends]]
        for target in dict.fromkeys(mine):  # keys and budgets naming any of them
            for source in referrers.get(target, ()):
                if source[0] in ("SmarterAuthToken", "Budget"):
                    depends.append([*source, *target])
        config = state.fields.get("spec", {}).get("config") or {}
        provider = config.get("provider") or "openai"
        if ("Provider", provider) not in states:  # the built-in provider
            depends.append([kind, name, "Provider", provider])
        named = {(edge[2], edge[3]) for edge in depends} | {(e[0], e[1]) for e in depends}
        clients.append(
            {
                "name": name,
                "file": state.file,
                "provider": provider,
                "model": config.get("defaultModel"),
                "plugins": sorted(n for k, n in named if k in PLUGIN_KINDS),
                "functions": list(state.fields.get("spec", {}).get("functions") or []),
                "keys": [_key(states[i]) for i in sorted(named) if i[0] == "SmarterAuthToken"],
                "budgets": sorted(n for k, n in named if k == "Budget"),
                "edges": depends,
                "usage": by_client.get(name),
            }
        )
    return short_digests(
        {
            "resources": [
                {
                    **_node(identity),
                    "file": state.file,
                    "fields": state.fields,
                    "refers_to": [_node(t) for t in edges[identity]],
                    "referred_by": [_node(s) for s in referrers.get(identity, [])],
                }
                for identity, state in sorted(states.items())
            ],
            "clients": clients,
        }
    )
