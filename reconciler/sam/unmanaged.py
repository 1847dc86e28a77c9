"""Smarter's kinds and keys samops does not act on: skipped out loud, or refused.

Part of Load. Smarter knows 25 kinds; samops manages ten. A document of a kind samops does not
manage (an Account, a Vectorstore, ...) is checked for its envelope and skipped with a warning
that says so, so a repository shared with Smarter validates. What would weaken safety if it
were skipped is refused instead: a client that lists Guardrails or MCPClients, with a sentence
saying what samops does not do (and, in ``budget_kind.py``, a Budget on a kind samops serves no
spending through).
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.sam.base import NAME_MAX_CHARS, NAME_PATTERN, normalise_name
from reconciler.sam.diagnostics import Diagnostic, Severity
from reconciler.sam.yaml_nodes import Path, YamlDocument

UNMANAGED_KINDS = (
    "Account",
    "User",
    "Vectorstore",
    "Vectorsearch",
    "Prompt",
    "Proxy",
    "LLMHost",
    "LLMHostCompute",
    "CustomDomain",
    "Orchestrator",
    "WebsearchPlugin",
    "ImageSearchPlugin",
    "SkillPlugin",
    "Guardrail",
    "MCPClient",
)
"""Skipped with a warning: nothing served depends on them."""

REFUSED_KINDS: dict[str, str] = {}
"""Refused: skipping them would drop a limit someone relies on."""

NOT_ENFORCED_KEYS: dict[tuple[str, Path], str] = {
    ("LLMClient", ("spec", "guardrails")): "Guardrails",
    ("LLMClient", ("spec", "mcpClients")): "MCPClients",
}
"""Keys of a managed kind that samops refuses unless empty: safety it cannot provide yet."""

API_VERSIONS = ("smarter.sh/v1", "smarter.sh/v0")


def unmanaged_document(document: YamlDocument, kind: str) -> list[Diagnostic]:
    """A document of a kind samops does not manage: its envelope's errors, or a warning that
    it is skipped (or, for a refused kind, why it is refused)."""
    data: dict[str, Any] = document.data
    errors = []
    if data.get("apiVersion") not in API_VERSIONS:
        errors.append(
            document.diagnostic(
                Severity.ERROR,
                "invalid-value",
                "apiVersion must be smarter.sh/v1 (or v0)",
                ("apiVersion",),
            )
        )
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not _valid_name(name):
        errors.append(
            document.diagnostic(
                Severity.ERROR,
                "invalid-value" if isinstance(metadata, dict) else "missing-key",
                "metadata.name must be a name of at most 50 letters, digits and '_'",
                ("metadata", "name"),
            )
        )
    if errors:
        return errors
    if kind in REFUSED_KINDS:
        return [
            document.diagnostic(
                Severity.ERROR,
                "not-enforced",
                f"{kind} {name!r} is refused: {REFUSED_KINDS[kind]}",
                ("kind",),
                hint="remove this file from the followed path until samops enforces it",
            )
        ]
    return [
        document.diagnostic(
            Severity.WARNING,
            "unmanaged-kind",
            f"samops does not manage {kind} resources: {name!r} is skipped",
            ("kind",),
            hint="it stays valid Smarter; samops serves LLM clients, plugins, connections, "
            "secrets, providers and keys",
        )
    ]


def not_enforced(document: YamlDocument, kind: str, path: Path, value: Any) -> Diagnostic | None:
    """An error when a client lists what samops cannot enforce; None for an empty list."""
    what = NOT_ENFORCED_KEYS[(kind, path)]
    if value in (None, []):
        return None
    return document.diagnostic(
        Severity.ERROR,
        "not-enforced",
        f"this client lists {what}, which samops does not enforce yet: it would run without "
        "them, so it is refused",
        path,
        key=True,
        hint=f"remove {'.'.join(map(str, path))} to serve the client without {what}, or keep "
        "it on Smarter",
    )


def _valid_name(name: str) -> bool:
    normal = normalise_name(name)
    return len(normal) <= NAME_MAX_CHARS and re.fullmatch(NAME_PATTERN, normal) is not None


NOT_ACTED_ON = {
    "customDomain": "samops serves no custom domain",
    "subdomain": "samops serves a client on <name>.<account>.api.<domain>, not on a subdomain "
    "of Smarter's",
}
"""LLMClient settings kept for Smarter that a user would expect to do something here."""


def not_acted_on(document: YamlDocument, data: dict[str, Any]) -> list[Diagnostic]:
    """Warnings for a client's settings that samops keeps but does not act on."""
    config = (data.get("spec") or {}).get("config") or {}
    nested = isinstance(config.get("prompt"), dict)
    settings = config["prompt"] if nested else config
    found = []
    for key, why in NOT_ACTED_ON.items():
        if settings.get(key) not in (None, "", {}):
            path: Path = ("spec", "config", "prompt", key) if nested else ("spec", "config", key)
            found.append(
                document.diagnostic(
                    Severity.WARNING,
                    "not-acted-on",
                    f"{key} is kept for Smarter but does nothing here: {why}",
                    path,
                    key=True,
                    hint="the client answers by its id or name on every samops route",
                )
            )
    return found
