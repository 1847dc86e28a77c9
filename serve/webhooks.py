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


DELIVERY_HEADERS = ("X-GitHub-Delivery", "X-Gitea-Delivery", "X-Gitlab-Event-UUID")
REPLAY_WINDOW_SECONDS = 600.0
MAX_REMEMBERED_DELIVERIES = 10_000


class Deliveries:
    """Deliveries seen within the replay window, by id and body: the same delivery sent again
    (a replay of a captured, correctly signed request, or a provider's redelivery) is
    acknowledged without a second wake-up. A sender that reuses an id for another body is
    not mistaken for a replay. Bounded in time and in count."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def first_time(self, headers: Mapping[str, str], body: bytes, now: float) -> bool:
        delivery_id = next((headers[h] for h in DELIVERY_HEADERS if headers.get(h)), None)
        if delivery_id is None:
            return True
        delivery = f"{delivery_id}:{hashlib.sha256(body).hexdigest()}"
        horizon = now - REPLAY_WINDOW_SECONDS
        while self._seen and (
            next(iter(self._seen.values())) < horizon
            or len(self._seen) >= MAX_REMEMBERED_DELIVERIES
        ):
            del self._seen[next(iter(self._seen))]
        if delivery in self._seen:
            return False
        self._seen[delivery] = now
        return True
