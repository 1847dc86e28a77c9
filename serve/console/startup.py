"""How a server process sets up its console: who may sign in, and the line it prints.

Entry point helper for ``serve/server.py``. Keys are configured as digests only
(``--admin-key-digest``, ``--viewer-key-digest``). ``samops run`` on a loopback address with no
admin key makes a sign-in key of its own for this run, Jupyter's way: it prints a link whose
fragment (``#key=...``) the page uses once and removes; a fragment is never sent to a server, so
the key reaches no access log. Its workers get only its digest (in their options).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable

from sqlalchemy import Engine

from reconciler.api import RefReader, digest_of
from serve.console import ConsoleDeps
from serve.console.reads import Followed
from serve.console.sessions import Access
from serve.settings import FollowerSpec, ServerOptions

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def console_sign_in(options: ServerOptions) -> tuple[ServerOptions, str | None]:
    """The options with this run's sign-in digest, and the key (None: no key of its own)."""
    if not options.console or options.admin_key_digest is not None:
        return options, None
    if options.host not in LOOPBACK:
        return options, None
    key = secrets.token_urlsafe(24)
    return dataclasses.replace(options, console_key_digest=digest_of(key)), key


def console_line(options: ServerOptions, port: int, sign_in_key: str | None) -> str:
    url = options.url(port)
    if sign_in_key is not None:
        return f"samops: console: {url}#key={sign_in_key} (this link signs you in)"
    if options.admin_key_digest is None and options.viewer_key_digest is None:
        return f"samops: console: {url} (no key may sign in: set --admin-key-digest)"
    return f"samops: console: {url} (sign in with the admin key)"


def _present(*digests: str | None) -> tuple[str, ...]:
    return tuple(d for d in digests if d)


def followed(spec: FollowerSpec | None) -> Followed | None:
    if spec is None:
        return None
    git = spec.url is not None or spec.repo is not None
    return Followed(source=spec.where(), ref=spec.ref if git else None, path=spec.subpath)


def console_deps(
    engine: Engine,
    options: ServerOptions,
    wake: Callable[[str], None],
    reader: RefReader | None,
) -> ConsoleDeps:
    access = Access(
        admin=_present(options.admin_key_digest, options.console_key_digest),
        viewer=_present(options.viewer_key_digest),
    )
    return ConsoleDeps(engine, access, wake, followed=followed(options.follower), reader=reader)
