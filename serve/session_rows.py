"""Chat turns as rows, and rows back as the messages of a session's history.

Serve stage, used by the session writer and reader (``sessions.py``): which session row a
turn belongs to (created when new, never another owner's), the columns of a message, and a
stored message as the chat routes return it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update

from reconciler.store import schema

log = logging.getLogger("samops.sessions")


Owner = tuple[str, str, str | None]
"""A session's key, its client and the key that opened it (None: a public client)."""


def session_ids(
    connection: Connection, wanted: Sequence[Owner], now: dt.datetime
) -> dict[Owner, int]:
    """The id of each wanted session under its owner: existing ones touched, missing ones
    created. A key whose session belongs to another owner gets no id here."""
    sessions = schema.chat_sessions
    owners: dict[str, Owner] = {}
    for owner in wanted:
        owners.setdefault(owner[0], owner)

    def known(keys: Sequence[str]) -> dict[Owner, int]:
        found = connection.execute(
            select(
                sessions.c.session_key, sessions.c.client_name, sessions.c.opened_by, sessions.c.id
            ).where(sessions.c.session_key.in_(keys))
        ).all()
        return {(row[0], row[1], row[2]): row[3] for row in found}

    ids = known(list(owners))
    if ids:
        connection.execute(
            update(sessions).where(sessions.c.id.in_(list(ids.values()))).values(updated_at=now)
        )
    taken = {owner[0] for owner in ids}
    missing = [owner for key, owner in owners.items() if key not in taken]
    if missing:
        connection.execute(
            insert(sessions),
            [
                {
                    "session_key": key,
                    "client_name": client,
                    "opened_by": opened_by,
                    "created_at": now,
                    "updated_at": now,
                }
                for key, client, opened_by in missing
            ],
        )
        ids |= known([owner[0] for owner in missing])
    return ids


def stored_text(value: Any) -> str | None:
    """Text as it is stored: NUL (which PostgreSQL's text cannot hold, and which dropped the
    whole turn there) written as the six characters ``\\u0000``, as JSON writes it."""
    if value is None:
        return None
    return (value if isinstance(value, str) else str(value)).replace("\x00", "\\u0000")


def message_fields(message: Mapping[str, Any]) -> dict[str, Any]:
    """A message as it is stored: text content, JSON tool calls, a string tool call id."""
    return {
        "role": message.get("role"),
        "content": stored_text(message.get("content")),
        "tool_calls": message.get("tool_calls"),
        "tool_call_id": stored_text(message.get("tool_call_id")),
    }


def history_message(fields: Mapping[Any, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": fields["role"], "content": fields["content"]}
    if fields["tool_calls"]:
        message["tool_calls"] = fields["tool_calls"]
    if fields["tool_call_id"]:
        message["tool_call_id"] = fields["tool_call_id"]
    return message
