"""What a manifest's Secret may read on the serving host: the operator's allow-list.

A Secret's ``valueFrom`` names an environment variable or a file of the host that serves it,
and anyone who can commit writes manifests. Without a bound, a committer could point a Secret
at ``OPENAI_API_KEY``, ``/etc/shadow`` or the sealing private key and send it to a server of
theirs through a new ApiConnection. So, as Vault's policies and Flux's namespaced secret
references do, samops reads only what the operator allowed, and nothing by default:

- ``SAMOPS_SECRETS_ENV``: comma-separated names of environment variables manifests may read;
  an entry ending in ``*`` allows a prefix (``STACKADEMY_*``). samops' own settings
  (``SAMOPS_*``) are never readable, whatever the list says.
- ``SAMOPS_SECRETS_FILE_DIRS``: folders (separated by ``:``) whose files manifests may read;
  a path is judged after following symlinks, so a link cannot lead out, and the sealing
  private key (``SAMOPS_SECRETS_PRIVATE_KEY_FILE``) is never readable.

Where the policy is known (the daemon always knows it; the CLI when either variable is set),
a reference outside it is a validation error at the Secret; serving checks again before every
read (``serve/secrets.py``), with a sentence saying what to allow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_SETTING = "SAMOPS_SECRETS_ENV"
FILE_DIRS_SETTING = "SAMOPS_SECRETS_FILE_DIRS"
PRIVATE_KEY_SETTING = "SAMOPS_SECRETS_PRIVATE_KEY_FILE"
OWN_PREFIX = "SAMOPS_"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a Secret may not read something, and what the operator could allow."""

    message: str
    hint: str | None = None

    def __str__(self) -> str:
        return self.message + (f" (hint: {self.hint})" if self.hint else "")


@dataclass(frozen=True, slots=True)
class SecretAccess:
    """The environment variables and folders a Secret may read. The default allows nothing."""

    env: tuple[str, ...] = ()
    """Names, or prefixes written ``PREFIX*``."""
    file_dirs: tuple[Path, ...] = ()
    """Folders, as resolved (symlinks followed) when the policy was read."""
    private_key_file: Path | None = None
    """The sealing key, never readable (resolved)."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> SecretAccess:
        env = tuple(n.strip() for n in environ.get(ENV_SETTING, "").split(",") if n.strip())
        dirs = tuple(
            Path(d).resolve() for d in environ.get(FILE_DIRS_SETTING, "").split(":") if d.strip()
        )
        key = environ.get(PRIVATE_KEY_SETTING)
        return cls(env, dirs, Path(key).resolve() if key else None)

    @staticmethod
    def configured(environ: Mapping[str, str] = os.environ) -> bool:
        """Whether the operator set the policy here (else the CLI cannot judge references)."""
        return ENV_SETTING in environ or FILE_DIRS_SETTING in environ

    @classmethod
    def if_configured(cls, environ: Mapping[str, str] = os.environ) -> SecretAccess | None:
        """The policy when the operator set it here, else None (unknown: the CLI in a CI job
        cannot judge what the serving host allows)."""
        return cls.from_environment(environ) if cls.configured(environ) else None

    def env_refusal(self, name: str) -> Refusal | None:
        """None when a Secret may read the variable ``name``; else why not."""
        if name.startswith(OWN_PREFIX):
            return Refusal(
                f"the environment variable {name} is a samops setting, which manifests may "
                "never read"
            )
        if any(name == a or (a.endswith("*") and name.startswith(a[:-1])) for a in self.env):
            return None
        return Refusal(
            f"the environment variable {name} is not one this host lets manifests read",
            f"the operator allows it with {ENV_SETTING}={name}, or a prefix such as "
            f"{ENV_SETTING}='{name.split('_')[0]}_*'",
        )

    def file_refusal(self, path: str) -> Refusal | None:
        """None when a Secret may read the file ``path``; else why not."""
        real = Path(path).resolve()
        if self.private_key_file is not None and real == self.private_key_file:
            return Refusal(f"{path} is the daemon's sealing key, which manifests may never read")
        if any(real.is_relative_to(folder) for folder in self.file_dirs):
            return None
        shown = "" if real == Path(path) else f" (a link to {real})"
        return Refusal(
            f"the file {path}{shown} is not in a folder this host lets manifests read",
            f"the operator allows folders with {FILE_DIRS_SETTING}=/run/secrets:...",
        )
