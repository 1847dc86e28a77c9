"""Error answers of the server: one renderer per protocol, and the one error a handler raises.

Serve stage. Which shape a route answers in is part of its protocol, and clients parse it:

- OpenAI's, on ``/v1/...`` (what the ``openai`` SDK reads into ``APIStatusError``):
  ``{"error": {"message", "type", "param", "code"}}``, and in a stream one
  ``data: {"error": {...}}`` event before ``data: [DONE]``;
- Smarter's, on the Smarter-compatible routes (``/api/v1/llm-clients/...``, ``/prompt/``,
  the manifest API): its journal error ``{"error": {"errorClass", "status", "description"}}``,
  which the ``smarter-api`` SDK reads into the exception class of the status, with samops'
  ``code`` and ``message`` beside them, in the envelope ``{"api", "metadata"}``;
- samops' own, everywhere else (the preview, status, readiness, the webhook):
  ``{"error": {"code", "message", ...}}``, the document ``reconciler.errors.error_document``
  that the CLI prints with ``-o json`` too.

``tests/serve/test_error_shapes.py`` locks both, route family by route family, and the CLI's.
A handler raises ``HttpError`` (status, code, sentence); the route family's renderer turns it
into its shape. The server's own failures never show a traceback or an exception's text: the
application middleware (``serve/app.py``) answers them as ``internal_error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from reconciler.errors import error_document
from serve import jsonwire

OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
}


class HttpError(Exception):
    """A request that gets an error answer: ``status``, a stable ``code``, a sentence."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        openai_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code = status, code
        self.param = param
        """The request parameter at fault, when one is (OpenAI's ``param``)."""
        self.headers = dict(headers or {})
        """Headers the answer carries (``Retry-After`` of a 429)."""
        self.openai_type = openai_type
        """OpenAI's ``type`` when the status does not say it (a rate limit's ``requests`` or
        ``tokens``)."""


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    """samops' shape (every route family but ``/v1``)."""
    return web.json_response(error_document(code, message, **extra), status=status)


SMARTER_API = "smarter.sh/v1"


def error_class(code: str) -> str:
    """Smarter names an error by its exception class: ``unknown_client`` -> ``UnknownClient``."""
    return "".join(part.capitalize() for part in code.split("_"))


def smarter_error_document(
    status: int, code: str, message: str, *, command: str, thing: str = "LLMClient"
) -> dict[str, Any]:
    error = {
        "errorClass": error_class(code),
        "status": status,
        "description": message,
        "code": code,
        "message": message,
        "command": command,
        "thing": thing,
    }
    return {"error": error, "api": SMARTER_API, "metadata": {"command": command, "thing": thing}}


def smarter_error_response(
    status: int, code: str, message: str, *, command: str, thing: str = "LLMClient"
) -> web.Response:
    """Smarter's shape (its chat and manifest routes)."""
    document = smarter_error_document(status, code, message, command=command, thing=thing)
    return web.json_response(document, status=status)


def openai_error_document(
    status: int, code: str, message: str, param: str | None = None, kind: str | None = None
) -> dict[str, Any]:
    kind = kind or OPENAI_ERROR_TYPES.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_error_response(
    status: int, code: str, message: str, param: str | None = None, kind: str | None = None
) -> web.Response:
    """OpenAI's shape (``/v1``)."""
    document = openai_error_document(status, code, message, param, kind)
    return web.json_response(document, status=status)


def openai_stream_error(code: str, message: str) -> bytes:
    """The event a stream sends when it fails after its first chunk (OpenAI's shape)."""
    return b"data: " + jsonwire.dumps(openai_error_document(500, code, message)) + b"\n\n"
