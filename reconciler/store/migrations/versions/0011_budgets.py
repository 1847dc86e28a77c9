"""budgets: Smarter's Budget kind, when each budget was attached to each resource, and
counters to a ten-billionth (a turn of a cheap model costs millionths of a dollar)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quota_counters", schema=None) as batch_op:
        for column, comment in (
            ("used", "settled: what turns spent"),
            ("leased", "handed to serving processes and not yet settled or returned"),
        ):
            batch_op.alter_column(
                column,
                existing_type=sa.Numeric(precision=24, scale=6),
                type_=sa.Numeric(precision=30, scale=10),
                existing_nullable=False,
                existing_comment=comment,
            )
    op.create_table(
        "budgets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column(
            "revision",
            sa.String(length=80),
            nullable=False,
            comment="revision that last changed it",
        ),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("version", sa.String(length=100), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("account_number", sa.String(length=14), nullable=True),
        sa.Column(
            "owner_username", sa.String(length=200), nullable=True, comment="metadata.username"
        ),
        sa.Column(
            "unit", sa.String(length=10), nullable=False, comment="cost (US dollars) or tokens"
        ),
        sa.Column(
            "periodic_limit",
            sa.Numeric(precision=24, scale=6),
            nullable=False,
            comment="per period; 0: none",
        ),
        sa.Column(
            "absolute_limit",
            sa.Numeric(precision=24, scale=6),
            nullable=False,
            comment="in total; 0: none",
        ),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column(
            "duration", sa.Integer(), nullable=False, comment="periods it applies for; 0: always"
        ),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("warning_threshold", sa.Integer(), nullable=False, comment="percent; 0: never"),
        sa.Column("message", sa.Text(), nullable=True, comment="what a refused caller is told"),
        sa.Column(
            "resources",
            sa.JSON(),
            nullable=False,
            comment="[{kind, name, accountNumber}]: each gets the limits for itself",
        ),
        sa.CheckConstraint("unit IN ('cost', 'tokens')", name=op.f("ck_budgets_unit")),
        sa.CheckConstraint("action IN ('block', 'warn')", name=op.f("ck_budgets_action")),
        sa.CheckConstraint(
            "period IN ('hour', 'day', 'week', 'month')", name=op.f("ck_budgets_period")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budgets")),
        sa.UniqueConstraint("name", name=op.f("uq_budgets_name")),
    )
    with op.batch_alter_table("budgets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_budgets_source"), ["source"], unique=False)
    op.create_table(
        "budget_attachments",
        sa.Column("budget", sa.String(length=50), nullable=False),
        sa.Column("resource_kind", sa.String(length=40), nullable=False),
        sa.Column("resource_name", sa.String(length=50), nullable=False),
        sa.Column(
            "attached_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="when a revision first listed the resource in the budget",
        ),
        sa.PrimaryKeyConstraint(
            "budget", "resource_kind", "resource_name", name=op.f("pk_budget_attachments")
        ),
    )


def downgrade() -> None:
    with op.batch_alter_table("quota_counters", schema=None) as batch_op:
        for column in ("used", "leased"):
            batch_op.alter_column(
                column,
                existing_type=sa.Numeric(precision=30, scale=10),
                type_=sa.Numeric(precision=24, scale=6),
                existing_nullable=False,
            )
    op.drop_table("budget_attachments")
    with op.batch_alter_table("budgets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_budgets_source"))
    op.drop_table("budgets")
