"""console: signed-in sessions and serving processes' heartbeats

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column(
            "token_digest",
            sa.String(length=80),
            nullable=False,
            comment="sha256 of the session cookie; the cookie itself is never stored",
        ),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('admin', 'viewer')", name=op.f("ck_console_sessions_role")),
        sa.PrimaryKeyConstraint("token_digest", name=op.f("pk_console_sessions")),
    )
    op.create_index(
        op.f("ix_console_sessions_expires_at"), "console_sessions", ["expires_at"], unique=False
    )
    op.create_table(
        "processes",
        sa.Column(
            "id", sa.String(length=40), nullable=False, comment="random, one per process start"
        ),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False, comment="run, serve, or worker"),
        sa.Column(
            "leads",
            sa.Boolean(),
            nullable=False,
            comment="holds the reconciler's leader lock",
        ),
        sa.Column("served_generation", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_processes")),
    )
    op.create_index(op.f("ix_processes_seen_at"), "processes", ["seen_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_processes_seen_at"), table_name="processes")
    op.drop_table("processes")
    op.drop_index(op.f("ix_console_sessions_expires_at"), table_name="console_sessions")
    op.drop_table("console_sessions")
