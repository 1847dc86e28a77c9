"""JSON Schema for SAM manifests, for editors and CI linters (``samops schema``).

One schema per kind, or one document that dispatches on ``kind`` with ``if``/``then`` so
YAML plugins (yaml-language-server, JetBrains) can complete and check any manifest file. The
schema is derived from the same pydantic models that validate, so the two cannot disagree on
keys; rules that span documents (references) are only in ``samops validate``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic.alias_generators import to_camel
from pydantic.json_schema import models_json_schema

from reconciler.sam.client_format import PROMPT_ATTRIBUTES, STYLED_ATTRIBUTES
from reconciler.sam.kinds import KINDS

Generation = Literal["0.14", "current"]
GENERATIONS: tuple[Generation, ...] = ("0.14", "current")

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://samops.dev/schema/sam.json"


def _pin_envelope(schema: dict[str, Any], kind: str) -> None:
    properties = schema.setdefault("properties", {})
    properties["kind"] = {"const": kind, "title": "Kind"}
    properties["apiVersion"] = {"enum": ["smarter.sh/v1", "smarter.sh/v0"], "title": "Apiversion"}
    properties["status"] = {"description": "Output written by servers; ignored with a warning."}


def kind_schema(kind: str, generation: Generation | None = None) -> dict[str, Any]:
    """The schema of one kind, self-contained; for an LLMClient, of one generation of the
    format when ``generation`` is given (otherwise it accepts either)."""
    model = KINDS[kind]
    schema = model.model_json_schema(by_alias=True, mode="validation")
    _pin_envelope(schema, kind)
    if kind == "LLMClient" and generation is not None:
        _only(schema["$defs"], generation)
    return {"$schema": SCHEMA_DIALECT, **schema}


def _only(definitions: dict[str, Any], generation: Generation) -> None:
    """Leave in the LLMClient's definitions only the keys of one generation of the format."""
    config = definitions["LLMClientConfig"]["properties"]
    spec = definitions["LLMClientSpec"]["properties"]
    if generation == "0.14":
        for key in ("prompt", "styles"):
            config.pop(key)
        spec.pop("extensions")
        for name in ("LLMClientPrompt", "LLMClientStyles", "StyleSection"):
            definitions.pop(name)
        return
    for attribute in (*PROMPT_ATTRIBUTES, *STYLED_ATTRIBUTES):
        config.pop(to_camel(attribute), None)
    definitions["LLMClientConfig"]["required"] = ["prompt"]
    spec.pop("functions")


def all_kinds_schema() -> dict[str, Any]:
    """One schema for any SAM document, choosing the kind's schema by the ``kind`` key."""
    _, top = models_json_schema(
        [(model, "validation") for model in KINDS.values()],
        by_alias=True,
        ref_template="#/$defs/{model}",
    )
    definitions: dict[str, Any] = top.get("$defs", {})
    branches = []
    for kind, model in KINDS.items():
        _pin_envelope(definitions[model.__name__], kind)
        branches.append(
            {
                "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                "then": {"$ref": f"#/$defs/{model.__name__}"},
            }
        )
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "SAM manifest (samops)",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"kind": {"enum": list(KINDS)}},
        "allOf": branches,
        "$defs": definitions,
    }
