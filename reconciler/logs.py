"""Logging set-up: text for people, JSON lines for log pipelines.

Fields passed with ``extra=`` (``revision``, ``outcome``...) appear as ``key=value`` in text
and as keys in JSON, so every reconcile line carries its revision in both forms.

Text lines carry untrusted strings (file names, refs, client names from manifests): control
characters (newlines, ANSI escapes) and undecodable bytes are written escaped, and a value with
spaces or quotes is quoted, so that no input can forge a line or colour a terminal.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.apply import ApplyResult

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))} | {
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
}


def escaped(text: str) -> str:
    """``text`` with control characters and lone surrogates (undecodable bytes) escaped."""
    return text.translate(_CONTROL).encode("utf-8", "backslashreplace").decode("utf-8")


def _field(value: Any) -> str:
    text = escaped(str(value))
    return (
        json.dumps(text, ensure_ascii=False)
        if (not text or any(c in text for c in ' "='))
        else text
    )


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        head = f"{moment} {record.levelname:<7} {escaped(record.getMessage())}"
        fields = " ".join(f"{k}={_field(v)}" for k, v in _extras(record).items())
        text = f"{head} {fields}" if fields else head
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


class Throttled:
    """A condition that lasts (a database down, a state that cannot load), logged without
    flooding: one warning when it starts, then at most one per interval (from
    ``initial_seconds``, doubling up to ``max_seconds``) carrying how often it failed, one info
    line when it ends; every failure in between at debug."""

    def __init__(
        self,
        logger: logging.Logger,
        started: str,
        ended: str,
        *,
        initial_seconds: float = 1.0,
        max_seconds: float = 60.0,
    ) -> None:
        self.logger, self.started, self.ended = logger, started, ended
        self.initial_seconds, self.max_seconds = initial_seconds, max_seconds
        self.since: float | None = None
        self.failures = 0
        self.interval = 0.0
        self.next_warning = 0.0

    def failed(self, now: float, error: str) -> None:
        self.failures += 1
        fields: dict[str, Any] = {"error": error, "failed_checks": self.failures}
        if self.since is None:
            self.since, self.interval = now, self.initial_seconds
        elif now < self.next_warning:
            self.logger.debug(self.started, extra=fields)
            return
        else:
            self.interval = min(self.max_seconds, self.interval * 2)
            fields["down_s"] = round(now - self.since, 1)
        self.next_warning = now + self.interval
        self.logger.warning(self.started, extra=fields)

    def recovered(self, now: float) -> None:
        if self.since is None:
            return
        self.logger.info(
            self.ended,
            extra={"down_s": round(now - self.since, 1), "failed_checks": self.failures},
        )
        self.since, self.failures = None, 0


def configure_logging(log_format: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx/httpx2 (under the openai SDK) log every upstream request at INFO: one line per
    # chat turn that says nothing a metric does not.
    for noisy in ("watchdog", "aiohttp.access", "git", "alembic", "httpx", "httpx2"):
        logging.getLogger(noisy).setLevel("WARNING")


def log_pass(
    log: logging.Logger,
    outcome: str,
    revision: str,
    elapsed: float,
    result: ApplyResult,
    *,
    incremental: bool = False,
) -> None:
    """The one log line of a daemon's pass (``daemon.py``): its revision, outcome,
    generation, duration and changes; an invalid revision's first error; a repeat at debug."""
    fields = {
        "revision": revision,
        "outcome": outcome,
        "generation": result.generation,
        "duration_ms": round(elapsed * 1000, 1),
    }
    if incremental:
        fields["incremental"] = True
    if not result.plan.empty:
        fields["changes"] = (
            f"+{result.plan.count('create')} ~{result.plan.count('update')}"
            f" -{result.plan.count('delete')}"
        )
    if result.repeated:  # already recorded and logged when it was first attempted
        log.debug(result.message, extra=fields)
    elif outcome == "invalid":
        fields["errors"] = len(result.errors)
        first = result.errors[0]
        log.warning(
            "revision is invalid; the last good state keeps serving: "
            f"{first.location()}: {first.message}",
            extra=fields,
        )
    elif outcome == "refused":
        log.warning(result.message, extra=fields)
    elif outcome == "up-to-date":
        log.debug("reconciled", extra=fields)
    else:
        if result.message:  # the files were not read: why
            fields["note"] = result.message
        log.info("reconciled", extra=fields)
