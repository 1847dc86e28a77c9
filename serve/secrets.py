"""Secret values, resolved on the serving host at use time, never stored.

Used when a connection or provider is compiled for serving. The database holds only how to
obtain a value: an environment variable, a file, or a value sealed to the daemon's key (opened
with the private key in ``SAMOPS_SECRETS_PRIVATE_KEY_FILE``). Variables and files are read only
when the operator's allow-list lets manifests read them (``reconciler/sam/secret_access.py``),
checked again here before every read. A value that cannot be obtained raises
``SecretUnavailable`` with a sentence naming the Secret, never the value.
"""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.api import SealingError, setting, unseal
from reconciler.sam.kinds import SecretConfig
from reconciler.sam.secret_access import SecretAccess

PRIVATE_KEY_ENV = "SAMOPS_SECRETS_PRIVATE_KEY_FILE"


class SecretUnavailable(Exception):
    """A Secret's value cannot be obtained on this host."""


def resolve_secret(name: str, config: SecretConfig, access: SecretAccess | None = None) -> str:
    """The value of Secret ``name`` from its canonical ``spec.config``, within ``access``
    (default: the policy this process's environment sets)."""
    source = config.value_from
    if source is not None:
        access = access or SecretAccess.from_environment()
        refusal = (
            access.env_refusal(source.env) if source.env else access.file_refusal(source.file or "")
        )
        if refusal is not None:
            raise SecretUnavailable(f"Secret {name!r} cannot be read: {refusal}")
    if source is not None and source.env:
        value = os.environ.get(source.env)
        if value is None:
            raise SecretUnavailable(
                f"Secret {name!r} reads the environment variable {source.env}, which is not "
                "set on this host"
            )
        return value
    if source is not None and source.file:
        try:
            return Path(source.file).read_text().removesuffix("\n")
        except OSError as exc:
            raise SecretUnavailable(f"Secret {name!r} reads {source.file}: {exc.strerror}") from exc
    if config.encrypted_value:
        key_file = setting(PRIVATE_KEY_ENV)
        if not key_file:
            raise SecretUnavailable(
                f"Secret {name!r} is sealed, and {PRIVATE_KEY_ENV} does not name the daemon's "
                "private key file"
            )
        try:
            private_key = Path(key_file).read_text().strip()
            return unseal(config.encrypted_value, secret_name=name, private_key=private_key)
        except (OSError, SealingError) as exc:
            raise SecretUnavailable(f"Secret {name!r} cannot be opened: {exc}") from exc
    raise SecretUnavailable(
        f"Secret {name!r} holds a plaintext value, which samops never stores; serve it with "
        "valueFrom or encryptedValue"
    )
