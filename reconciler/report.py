"""What the database holds, for people: ``get``, ``describe`` and the status as text.

Read-only views over the store. ``describe`` prints valid SAM: validated through the kind's
model and dumped without defaults, it re-applies as an empty plan (Smarter's describe output
does not round-trip; ours must, and a test holds it to that for every kind).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine

from reconciler.desired import ResourceState
from reconciler.errors import DescribeError
from reconciler.sam.client_format import written_shape
from reconciler.sam.kinds import Budget, Secret
from reconciler.store.budgets import budget_status
from reconciler.store.db import reading
from reconciler.store.read import read_actual

# Columns `samops get KIND` shows after NAME, as (heading, attribute path in the kind's model).
GET_COLUMNS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "LLMClient": (
        ("PROVIDER", ("spec", "config", "provider")),
        ("MODEL", ("spec", "config", "default_model")),
        ("API KEY", ("spec", "api_key")),
    ),
    "Plugin": (("SELECTOR", ("spec", "selector", "directive")),),
    "SqlPlugin": (
        ("CONNECTION", ("spec", "connection")),
        ("SELECTOR", ("spec", "selector", "directive")),
    ),
    "ApiPlugin": (
        ("CONNECTION", ("spec", "connection")),
        ("ENDPOINT", ("spec", "api_data", "endpoint")),
    ),
    "SqlConnection": (
        ("ENGINE", ("spec", "connection", "db_engine")),
        ("DATABASE", ("spec", "connection", "database")),
    ),
    "ApiConnection": (("BASE URL", ("spec", "connection", "base_url")),),
    "Secret": (("FROM", ("spec", "config", "value_from")),),
    "Provider": (("BASE URL", ("spec", "provider", "base_url")),),
    "SmarterAuthToken": (("ACTIVE", ("spec", "config", "is_active")),),
    "Budget": (
        ("UNIT", ("spec", "config", "unit")),
        ("PERIODIC", ("spec", "config", "periodic_limit")),
        ("PERIOD", ("spec", "config", "period")),
        ("ABSOLUTE", ("spec", "config", "absolute_limit")),
        ("ACTION", ("spec", "config", "action")),
    ),
}


def _attribute(model: BaseModel, path: tuple[str, ...]) -> Any:
    value: Any = model
    for name in path:
        value = getattr(value, name)
    return value.model_dump(mode="json", by_alias=True) if isinstance(value, BaseModel) else value


def _resources(engine: Engine, kind: str) -> list[ResourceState]:
    with reading(engine) as connection:
        actual = read_actual(connection)
        connection.rollback()
    return sorted((s for (k, _), s in actual.items() if k == kind), key=lambda s: s.name)


def get_table(
    engine: Engine, kind: str, name: str | None = None, *, wide: bool = False
) -> tuple[list[str], list[list[str]]]:
    """Headings and rows for ``samops get KIND [NAME]``; ``wide`` adds the description, the
    version and the file (``-o wide``)."""
    columns = GET_COLUMNS[kind]
    headings = ["NAME", *(heading for heading, _ in columns)]
    headings += ["VERSION", "DESCRIPTION", "FILE"] if wide else ["FILE"]
    rows = []
    for resource in _selected(engine, kind, name):
        cells = [resource.name]
        for _, path in columns:
            cells.append(_cell(_attribute(resource.model, path)))
        if wide:
            metadata = resource.model.metadata
            cells += [_cell(metadata.version), _cell(metadata.description)]
        rows.append([*cells, resource.file])
    return headings, rows


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        value = ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    return "" if value is None else " ".join(str(value).split())


def _selected(engine: Engine, kind: str, name: str | None) -> list[ResourceState]:
    resources = _resources(engine, kind)
    if name is None:
        return resources
    found = [r for r in resources if r.name == name]
    if not found:
        raise DescribeError(f"there is no {kind} named {name!r} (hint: samops get {kind})")
    return found


def manifests(engine: Engine, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """``samops get KIND [NAME] -o json|yaml``: the resources as SAM manifests. A Secret given
    in plaintext (never stored) shows its fingerprint in place of the value; every other
    manifest re-applies as an empty plan, as ``describe``'s does."""
    return [_manifest(resource) for resource in _selected(engine, kind, name)]


def describe(engine: Engine, kind: str, name: str) -> dict[str, Any]:
    """The resource as a SAM manifest that re-applies as an empty plan. A Budget's carries
    Smarter's read-only ``status`` block: what each of its resources spent, against which
    limit, locked or not (ignored, with a warning, when the file is applied again)."""
    found = _selected(engine, kind, name)[0]
    if _plaintext_secret(found):
        raise DescribeError(
            f"Secret {name!r} holds a plaintext value, which samops never stores; it "
            "cannot be written back (hint: move it to valueFrom or encryptedValue)"
        )
    manifest = _manifest(found)
    if isinstance(found.model, Budget):
        manifest["status"] = {"resources": budget_status(engine, found.model)}
    return manifest


def _plaintext_secret(resource: ResourceState) -> bool:
    model = resource.model
    return isinstance(model, Secret) and model.spec.config.value_fingerprint is not None


def _manifest(resource: ResourceState) -> dict[str, Any]:
    if _plaintext_secret(resource):  # no manifest holds a fingerprint: shown as stored
        return {"apiVersion": "smarter.sh/v1", "kind": "Secret", **resource.fields}
    manifest = resource.model.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return written_shape(manifest) if resource.kind == "LLMClient" else manifest


def table(headings: list[str], rows: list[list[str]]) -> str:
    """Plain aligned columns, like kubectl get."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headings)
    ]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [headings, *rows]
    ]
    return "\n".join(lines)


def status_text(document: dict[str, Any]) -> str:
    last = document["last_sync"]
    lines = [
        f"source:            {document['source'] or '-'}",
        f"applied revision:  {document['last_applied_revision'] or '-'}",
        f"attempted:         {document['last_attempted_revision'] or '-'}",
        f"generation:        {document['generation']}",
        "suspended:         "
        + (
            f"yes ({document['suspended_reason'] or 'no reason given'})"
            if document["suspended"]
            else "no"
        ),
        "resources:         " + ", ".join(f"{k} {v}" for k, v in document["resources"].items()),
    ]
    if last is not None:
        lines.append(
            f"last sync:         {last['outcome']} {last['revision'][:12]} at "
            f"{last['finished_at']} ({last['duration_ms']} ms)"
        )
        for error in last["errors"]:
            where = ":".join(
                str(error[k]) for k in ("file", "line", "column") if error.get(k) is not None
            )
            lines.append(f"  {where + ': ' if where else ''}{error['message']}")
    if document["history"]:
        rows = [
            [
                str(s["id"]),
                s["revision"][:12],
                s["outcome"],
                f"+{s['created']} ~{s['updated']} -{s['deleted']}",
                str(s["generation"]),
                s["finished_at"] or "",
            ]
            for s in document["history"]
        ]
        lines += ["", table(["SYNC", "REVISION", "OUTCOME", "CHANGES", "GEN", "FINISHED"], rows)]
    return "\n".join(lines)
