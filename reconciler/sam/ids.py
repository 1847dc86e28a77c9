"""The ids Smarter's API gives a resource: an integer ``id`` and a ``hashedId``.

Part of the format, used by the server's Smarter-compatible routes. Smarter numbers its rows;
samops derives both ids from what identifies a resource in git, its namespace and its name
(the three plugin kinds share one namespace), so they are the same in every process, replica
and preview, survive restarts, re-applies of an updated resource and a rebuilt database, and
never need a column. A renamed resource is a new resource, with new ids, as in git.

The integer is 48 bits of a SHA-256 digest (below 2**53, exact in JavaScript); two resources
of a revision collide with a probability of about n**2 / 2**49 (3 in 10 million for 10,000).
The hashed id is 16 lowercase base-32 characters of another digest, so neither id can be
guessed from the other without the name.
"""

from __future__ import annotations

import base64
import hashlib

PLUGIN_KINDS = frozenset({"Plugin", "SqlPlugin", "ApiPlugin"})


def namespace_of(kind: str) -> str:
    return "Plugin" if kind in PLUGIN_KINDS else kind


def resource_id(kind: str, name: str) -> int:
    """The integer id of resource ``name`` of ``kind``: positive, below 2**48."""
    digest = hashlib.sha256(f"samops-id\0{namespace_of(kind)}\0{name}".encode()).digest()
    return int.from_bytes(digest[:6], "big") or 1


def hashed_id(kind: str, name: str) -> str:
    """The hashed id of resource ``name`` of ``kind``: 16 characters of ``[a-z2-7]``."""
    digest = hashlib.sha256(f"samops-hashed-id\0{namespace_of(kind)}\0{name}".encode()).digest()
    return base64.b32encode(digest[:10]).decode().lower()
