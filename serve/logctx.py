"""The request id of the request being served, added to every log line it causes.

Chat routes set ``request_id`` at the start of a request (the caller's ``X-Request-Id`` or a
new one); ``RequestIdFilter``, installed on the log handler by the composition root, copies it
into each record, so text logs show ``request_id=...`` and JSON logs a ``request_id`` key.
asyncio copies context variables into tasks and worker threads started with ``to_thread``.
"""

from __future__ import annotations

import contextvars
import logging

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        current = request_id.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current
        return True


def install() -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
