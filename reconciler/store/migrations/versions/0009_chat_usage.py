"""chat usage: what each chat turn cost (tokens, price, latency), one row per turn

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_usage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, comment="when the turn ended"),
        sa.Column("client", sa.String(length=50), nullable=False),
        sa.Column("route", sa.String(length=20), nullable=False, comment="openai or smarter"),
        sa.Column(
            "key_name",
            sa.String(length=50),
            nullable=True,
            comment="the SmarterAuthToken of the key; NULL: none",
        ),
        sa.Column(
            "session_key",
            sa.String(length=64),
            nullable=True,
            comment="the chat session (Smarter's routes)",
        ),
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column(
            "model",
            sa.String(length=200),
            nullable=False,
            comment="the model the upstream was asked for",
        ),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("upstream_calls", sa.Integer(), nullable=False),
        sa.Column(
            "prompt_tokens",
            sa.BigInteger(),
            nullable=True,
            comment="NULL: an upstream call did not say",
        ),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=True),
        sa.Column("total_tokens", sa.BigInteger(), nullable=True),
        sa.Column(
            "cost_usd",
            sa.Numeric(precision=20, scale=10),
            nullable=True,
            comment="NULL: unknown (no price for the model)",
        ),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column(
            "generation",
            sa.BigInteger(),
            nullable=False,
            comment="configuration that answered",
        ),
        sa.CheckConstraint("outcome IN ('ok', 'failed')", name=op.f("ck_chat_usage_outcome")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_usage")),
    )
    with op.batch_alter_table("chat_usage", schema=None) as batch_op:
        batch_op.create_index("ix_chat_usage_client_at", ["client", "at"], unique=False)
        batch_op.create_index("ix_chat_usage_key_name_at", ["key_name", "at"], unique=False)
        batch_op.create_index("ix_chat_usage_at", ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("chat_usage", schema=None) as batch_op:
        batch_op.drop_index("ix_chat_usage_at")
        batch_op.drop_index("ix_chat_usage_key_name_at")
        batch_op.drop_index("ix_chat_usage_client_at")
    op.drop_table("chat_usage")
