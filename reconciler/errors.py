"""The errors samops raises on purpose, and what the reconcile loop does with each.

Every stage raises from this tree; a library's own exceptions (GitPython, SQLAlchemy and its
drivers, aiohttp's client, openai) are translated into it at one choke point per library,
chained with ``raise ... from exc`` so that a log at debug level still has the cause::

    SamopsError                  str() is a sentence a user can act on (where, what, a hint)
    ├── TemporaryError           the same work may succeed later: the loop retries it with
    │   │                        capped, jittered backoff (kopf's TemporaryError)
    │   ├── SourceError          git or the folder cannot be read now (source.py: git_errors)
    │   ├── DatabaseUnavailable  the database cannot be reached or used now (store/db.py)
    │   └── ApplyUnavailable     an apply found the database unavailable; nothing changed
    └── PermanentError           the same input fails the same way: the loop records it and
        │                        waits for a new revision or a `samops reconcile`
        ├── DatabaseRefused      the database refused a statement (a constraint)
        ├── DatabaseMisconfigured  a bad URL, no driver, a schema of another version
        ├── ApplyRefused         an apply the database refused; nothing changed
        ├── SealingError         a sealed secret cannot be made or opened
        └── DescribeError        `describe` was asked for what does not exist

``DatabaseError`` is the parent of the three database errors and ``ApplyError`` of the two
apply errors, for callers that handle any of them alike.

Anything else is a bug in samops. The loop logs it with its traceback, records the pass as
failed (``internal error``, never the exception's text, which may hold data) and does not
retry it on a timer: a bug retried as if transient hides in the logs.

Invalid manifests are not exceptions: they are ``Diagnostic`` values collected for the whole
revision (``sam/diagnostics.py``). The serving side (``serve/errors.py``) maps these errors and
its own to HTTP answers, one renderer per protocol; ``error_document`` is the one JSON shape of
samops' own errors, shared by the CLI and the server.
"""

from __future__ import annotations

from typing import Any


class SamopsError(Exception):
    """An error samops raises on purpose; its text is meant for the user."""


class TemporaryError(SamopsError):
    """The same work may succeed later: retried with backoff."""


class PermanentError(SamopsError):
    """The same input fails the same way: not retried until the input changes."""


class SourceError(TemporaryError):
    """The source itself cannot be read (no repository, unknown ref, missing path, network)."""


class DatabaseError(SamopsError):
    """The database cannot be reached, refused a statement, or is not one samops can use."""


class DatabaseUnavailable(DatabaseError, TemporaryError):
    """The database cannot be reached or used right now."""


class DatabaseRefused(DatabaseError, PermanentError):
    """The database refused a statement; retrying the same statement fails the same way."""


class DatabaseMisconfigured(DatabaseError, PermanentError):
    """A URL samops cannot use, a missing driver, or a schema of another samops version."""


class ApplyError(SamopsError):
    """Applying failed for a reason other than the revision's content; nothing changed."""


class ApplyUnavailable(ApplyError, TemporaryError):
    """The apply could not reach the database; retried."""


class ApplyRefused(ApplyError, PermanentError):
    """The database refused the apply; retried only for a new revision or on request."""


class SealingError(PermanentError):
    """A secret cannot be sealed or opened (no key, a wrong key, damaged ciphertext)."""


class DescribeError(PermanentError):
    """What ``describe`` was asked for does not exist, or cannot be shown."""


def error_document(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """samops' own JSON error shape, the same from the CLI (``-o json``) and the server:
    ``{"error": {"code": ..., "message": ..., ...}}``. OpenAI's shape on ``/v1`` is rendered by
    ``serve/errors.py``."""
    return {"error": {"code": code, "message": message, **extra}}
