"""The tables of the operator's console: signed-in sessions and processes' heartbeats.

Part of the schema (``schema.py`` imports them; ``metadata.py`` holds every table, so the
migrations test compares them all). Written by the serving processes only, never by Apply.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    String,
    Table,
)

from reconciler.store.metadata import metadata

console_sessions = Table(
    "console_sessions",
    metadata,
    Column(
        "token_digest",
        String(80),
        primary_key=True,
        comment="sha256 of the session cookie; the cookie itself is never stored",
    ),
    Column("role", String(10), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    CheckConstraint("role IN ('admin', 'viewer')", name="role"),
)
"""Signed-in console sessions (``serve/console/sessions.py``): shared by every process and
replica, so a cookie works wherever the load balancer sends it and signing out ends it
everywhere."""

processes = Table(
    "processes",
    metadata,
    Column("id", String(40), primary_key=True, comment="random, one per process start"),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("role", String(20), nullable=False, comment="run, serve, or worker"),
    Column("leads", Boolean, nullable=False, comment="holds the reconciler's leader lock"),
    Column("served_generation", BigInteger, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False, index=True),
)
"""Serving processes' heartbeats (``serve/heartbeat.py``): which process leads and which
generation each serves, for the console's overview. A row not seen for a minute is gone."""
