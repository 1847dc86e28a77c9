"""API keys for SmarterAuthToken: generated here, shown once, stored only as digests.

Used by ``samops keys`` and by the chat server's auth. A key is 256 random bits in base64url
with a recognisable prefix (so secret scanners and people can spot a leaked one). Git, the
database and the logs only ever see ``sha256:<hex>`` or ``sha512:<hex>``; checking a presented
key compares digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Literal

KEY_PREFIX = "samops_"
KEY_BYTES = 32
DigestAlgorithm = Literal["sha256", "sha512"]


def generate_key() -> str:
    """A new API key: ``samops_`` + 43 base64url characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def digest_of(key: str, algorithm: DigestAlgorithm = "sha256") -> str:
    """The digest written in manifests: ``<algorithm>:<hex>``."""
    return f"{algorithm}:{hashlib.new(algorithm, key.encode()).hexdigest()}"


def presented_digests(key: str) -> dict[str, str]:
    """A presented key's digests by algorithm, computed once per request."""
    return {algorithm: digest_of(key, algorithm) for algorithm in ("sha256", "sha512")}


def digests_match(presented: dict[str, str], digests: Sequence[str]) -> bool:
    """True when one of ``digests`` is the presented key's; every comparison is
    constant-time."""
    matched = False
    for digest in digests:
        mine = presented.get(digest.partition(":")[0])
        if mine is not None:
            matched |= hmac.compare_digest(mine, digest)
    return matched


def token_manifest(
    name: str,
    digests: list[str],
    *,
    description: str | None = None,
    username: str | None = None,
    expires_at: str | None = None,
    active: bool = True,
) -> dict[str, object]:
    """The SmarterAuthToken manifest for a key: digests only, validated before it is returned."""
    from reconciler.sam.kinds import SmarterAuthToken

    config: dict[str, object] = {"isActive": active, "digest": digests}
    if username:
        config["username"] = username
    if expires_at:
        config["expiresAt"] = expires_at
    return SmarterAuthToken.manifest(name, {"config": config}, description=description)
