"""Sealed secrets: values encrypted to the daemon's public key, safe to commit.

Used by ``samops secrets`` (encrypt, keygen) and, at use time, by the serving host (decrypt).
Like Bitnami's Sealed Secrets, anyone holding the public key can seal a value, and only the
daemon's private key can open it, so developers and CI never need the key that reads
production secrets. The scheme is an ECIES-style box from ``cryptography``:

    X25519(ephemeral, daemon public) -> HKDF-SHA256 -> ChaCha20-Poly1305

with the Secret's name as associated data, so a sealed value cannot be moved to another
Secret. Text form: ``samops:v1:`` + base64url(ephemeral public 32 B | nonce 12 B | ciphertext).
Keys are ``samops-pk1:``/``samops-sk1:`` + base64url of the 32 raw bytes.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from reconciler.errors import SealingError
from reconciler.sam.kinds import ENCRYPTED_PREFIX

PUBLIC_PREFIX = "samops-pk1:"
PRIVATE_PREFIX = "samops-sk1:"
_INFO = b"samops sealed secret v1"
_RAW = serialization.Encoding.Raw


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise SealingError(f"{what} is not valid base64url") from exc


def generate_keypair() -> tuple[str, str]:
    """A new (public, private) key pair in text form."""
    private = X25519PrivateKey.generate()
    raw_private = private.private_bytes(
        _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    raw_public = private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
    return PUBLIC_PREFIX + _b64(raw_public), PRIVATE_PREFIX + _b64(raw_private)


def _parse_key(text: str, prefix: str, what: str) -> bytes:
    text = text.strip()
    if not text.startswith(prefix):
        raise SealingError(f"{what} must start with {prefix!r}")
    raw = _unb64(text.removeprefix(prefix), what)
    if len(raw) != 32:
        raise SealingError(f"{what} must hold 32 bytes")
    return raw


def _derive(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral_public + recipient_public, info=_INFO
    )
    return hkdf.derive(shared)


def seal(value: str, *, secret_name: str, public_key: str) -> str:
    """Encrypt ``value`` for the holder of the private key matching ``public_key``."""
    recipient = _parse_key(public_key, PUBLIC_PREFIX, "the public key")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    key = _derive(shared, ephemeral_public, recipient)
    nonce = os.urandom(12)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, value.encode(), secret_name.encode())
    return ENCRYPTED_PREFIX + _b64(ephemeral_public + nonce + ciphertext)


def unseal(sealed: str, *, secret_name: str, private_key: str) -> str:
    """Decrypt a value made by :func:`seal` for the Secret ``secret_name``."""
    if not sealed.startswith(ENCRYPTED_PREFIX):
        raise SealingError(f"a sealed value starts with {ENCRYPTED_PREFIX!r}")
    raw = _unb64(sealed.removeprefix(ENCRYPTED_PREFIX), "the sealed value")
    if len(raw) < 32 + 12 + 16:
        raise SealingError("the sealed value is too short")
    private = X25519PrivateKey.from_private_bytes(
        _parse_key(private_key, PRIVATE_PREFIX, "the private key")
    )
    recipient = private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
    ephemeral_public, nonce, ciphertext = raw[:32], raw[32:44], raw[44:]
    shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    key = _derive(shared, ephemeral_public, recipient)
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, secret_name.encode()).decode()
    except InvalidTag as exc:
        raise SealingError(
            f"the sealed value of Secret {secret_name!r} does not open with this key (sealed "
            "for another key, for another Secret name, or altered)"
        ) from exc


def sealed_secret_manifest(
    name: str, value: str, *, public_key: str, description: str | None = None
) -> dict[str, object]:
    """A Secret manifest holding ``value`` sealed to ``public_key``, validated."""
    from reconciler.sam.kinds import Secret

    sealed = seal(value, secret_name=name, public_key=public_key)
    return Secret.manifest(name, {"config": {"encryptedValue": sealed}}, description=description)
