"""pydantic's validation errors as positioned diagnostics: the one place they are translated.

Part of Load/Validate (``load.py`` calls ``translate`` for each error of a document). Each
becomes ``file:line:col: key.path: message`` with a hint (the closest known key, what a
pattern means, the allowed values), and never echoes a value that may be secret material.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.sam.base import ACCOUNT_NUMBER_PATTERN, NAME_PATTERN, SEMVER_PATTERN, closest
from reconciler.sam.diagnostics import Diagnostic, Severity, join_path, shorten
from reconciler.sam.introspect import fields_by_alias, is_sensitive, model_at
from reconciler.sam.kinds import (
    DIGEST_PATTERN,
    ENV_NAME_PATTERN,
    HEADER_NAME_PATTERN,
    PARAMETER_NAME,
    Document,
)
from reconciler.sam.yamlread import YamlDocument

PATTERN_MEANINGS = {
    NAME_PATTERN: "expected a snake_case name: lowercase letters, digits and '_'",
    SEMVER_PATTERN: "expected a SemVer 2.0 version such as 1.2.0 or 2.0.0-beta.1",
    ACCOUNT_NUMBER_PATTERN: "expected an account number such as 1234-5678-9012",
    DIGEST_PATTERN: "expected sha256:<64 hex digits> or sha512:<128 hex digits>",
    PARAMETER_NAME: "expected an identifier: letters, digits and '_', not starting with a digit",
    ENV_NAME_PATTERN: "expected an environment variable name such as DB_PASSWORD",
    HEADER_NAME_PATTERN: "expected an HTTP header name such as X-Api-Version",
}
KEYS_THAT_LOOK_LIKE_CREDENTIALS = {"key", "apikey", "api_key", "token", "value", "secret"}


def translate(error: Any, model: type[Document], resource: YamlDocument) -> Diagnostic:
    loc: tuple[Any, ...] = tuple(error["loc"])
    kind = error["type"]
    path = join_path(loc)
    file = resource.file
    if kind == "extra_forbidden":
        key = str(loc[-1])
        parent = model_at(model, loc[:-1])
        suggestion = closest(key, fields_by_alias(parent)) if parent else None
        if model.KIND == "SmarterAuthToken" and key.lower() in KEYS_THAT_LOOK_LIKE_CREDENTIALS:
            hint = (
                "API keys never go in git: 'samops keys create NAME' prints the key once and "
                "a manifest holding only spec.config.digest"
            )
        elif suggestion:
            hint = f"did you mean {suggestion!r}?"
        elif parent:
            hint = "valid keys here: " + ", ".join(sorted(fields_by_alias(parent)))
        else:
            hint = None
        return resource.diagnostic(
            Severity.ERROR, "unknown-key", f"unknown key {key!r}", loc, key=True, hint=hint
        )
    if kind == "missing":
        return Diagnostic(
            Severity.ERROR,
            "missing-key",
            f"the required key {str(loc[-1])!r} is missing",
            file=file,
            position=resource.position_of(loc[:-1], key=True),
            path=path,
            hint=f"add {join_path(loc)} to this {model.KIND}",
        )
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        message = PATTERN_MEANINGS.get(pattern, "the value does not have the expected form")
    given = error.get("input")
    if isinstance(given, dict):  # a rule about a whole mapping: point at its key, no echo
        return resource.diagnostic(Severity.ERROR, "invalid-value", message, loc, key=True)
    value = None if is_sensitive(model, loc) else shorten(given)
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        value = type(given).__name__ if given is not None else "null"
        message = "expected a mapping"
    hint = _value_hint(kind, error.get("ctx") or {})
    return resource.diagnostic(
        Severity.ERROR, "invalid-value", message, loc, value=value, hint=hint
    )


def _value_hint(kind: str, context: Mapping[str, Any]) -> str | None:
    """What to write instead, for pydantic's own error types (our validators' messages
    already say it)."""
    bound = {
        "greater_than": "a number above {gt}",
        "greater_than_equal": "a number of at least {ge}",
        "less_than": "a number below {lt}",
        "less_than_equal": "a number of at most {le}",
        "string_too_long": "at most {max_length} characters",
        "string_too_short": "at least {min_length} characters",
        "too_short": "at least {min_length} items",
        "too_long": "at most {max_length} items",
        "literal_error": "one of {expected}",
        "enum": "one of {expected}",
    }.get(kind)
    if bound is not None:
        try:
            return "write " + bound.format(**context)
        except KeyError:
            return None
    return {
        "int_parsing": "write a whole number, without quotes",
        "int_type": "write a whole number, without quotes",
        "int_from_float": "write a whole number, without a fraction",
        "float_parsing": "write a number, without quotes",
        "float_type": "write a number, without quotes",
        "bool_parsing": "write true or false, without quotes",
        "bool_type": "write true or false, without quotes",
        "string_type": "write text; quote it if YAML reads it as another type",
        "list_type": "write a list: [a, b] or one '- item' per line",
        "model_type": "write a mapping: one 'key: value' per line, indented below this key",
        "model_attributes_type": "write a mapping: one 'key: value' per line, indented",
        "dict_type": "write a mapping: one 'key: value' per line, indented below this key",
        "date_from_datetime_parsing": "write a date as YYYY-MM-DD",
        "date_parsing": "write a date as YYYY-MM-DD",
        "datetime_parsing": "write a time as YYYY-MM-DDTHH:MM:SSZ",
        "datetime_from_date_parsing": "write a time as YYYY-MM-DDTHH:MM:SSZ",
        "url_parsing": "write a full URL such as https://api.example.com/",
        "url_scheme": "write a URL starting with http:// or https://",
    }.get(kind)
