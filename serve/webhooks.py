"""Git webhook deliveries: who sent them, and whether they are signed with our secret.

Used by ``POST /hooks/git``. Payloads are untrusted: a verified delivery only wakes the daemon
to fetch the followed ref; nothing in the body is used. Supported senders:

| sender  | header                         | check                                   |
|---------|--------------------------------|-----------------------------------------|
| GitLab  | ``X-Gitlab-Token``             | equals the secret                       |
| Gitea   | ``X-Gitea-Signature``          | hex HMAC-SHA256 of the body             |
| GitHub  | ``X-Hub-Signature-256``        | ``sha256=`` + hex HMAC-SHA256 of the body |
| generic | ``X-Samops-Signature``         | ``sha256=`` + hex HMAC-SHA256 of the body |

Every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Verdict:
    provider: str
    ok: bool
    reason: str = ""


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _prefixed(signature: str, secret: str, body: bytes) -> bool:
    scheme, _, digest = signature.partition("=")
    return scheme == "sha256" and hmac.compare_digest(digest.lower(), _hmac_hex(secret, body))


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> Verdict:
    """Which provider signed this delivery, and whether the signature is right."""
    if (token := headers.get("X-Gitlab-Token")) is not None:
        return Verdict(
            "gitlab", hmac.compare_digest(token.encode(), secret.encode()), "wrong token"
        )
    if (signature := headers.get("X-Gitea-Signature")) is not None:
        return Verdict(
            "gitea",
            hmac.compare_digest(signature.lower(), _hmac_hex(secret, body)),
            "wrong signature",
        )
    if (signature := headers.get("X-Hub-Signature-256")) is not None:
        return Verdict("github", _prefixed(signature, secret, body), "wrong signature")
    if (signature := headers.get("X-Samops-Signature")) is not None:
        return Verdict("generic", _prefixed(signature, secret, body), "wrong signature")
    return Verdict("unknown", False, "no signature header")


def sign(body: bytes, secret: str) -> str:
    """The ``X-Samops-Signature`` / ``X-Hub-Signature-256`` value for ``body``."""
    return "sha256=" + _hmac_hex(secret, body)
