"""Error answers of the server: one renderer per protocol, and the one error a handler raises.

Serve stage. Which shape a route answers in is part of its protocol, and clients parse it:

- OpenAI's, on ``/v1/...`` (what the ``openai`` SDK reads into ``APIStatusError``):
  ``{"error": {"message", "type", "param", "code"}}``, and in a stream one
  ``data: {"error": {...}}`` event before ``data: [DONE]``;
- samops' own, everywhere else (the Smarter-compatible chat routes, the preview, status,
  readiness, the webhook): ``{"error": {"code", "message", ...}}``, the document
  ``reconciler.errors.error_document`` that the CLI prints with ``-o json`` too.

``tests/serve/test_error_shapes.py`` locks both, route family by route family, and the CLI's.
A handler raises ``HttpError`` (status, code, sentence); the route family's renderer turns it
into its shape. The server's own failures never show a traceback or an exception's text: the
application middleware (``serve/app.py``) answers them as ``internal_error``.
"""

from __future__ import annotations

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

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    """samops' shape (every route family but ``/v1``)."""
    return web.json_response(error_document(code, message, **extra), status=status)


def openai_error_document(status: int, code: str, message: str) -> dict[str, Any]:
    kind = OPENAI_ERROR_TYPES.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def openai_error_response(status: int, code: str, message: str) -> web.Response:
    """OpenAI's shape (``/v1``)."""
    return web.json_response(openai_error_document(status, code, message), status=status)


def openai_stream_error(code: str, message: str) -> bytes:
    """The event a stream sends when it fails after its first chunk (OpenAI's shape)."""
    return b"data: " + jsonwire.dumps(openai_error_document(500, code, message)) + b"\n\n"
