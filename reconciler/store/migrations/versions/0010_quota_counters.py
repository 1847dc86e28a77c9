"""quota counters: shared counters of budgets and rate limits, per scope and period

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 13:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_counters",
        sa.Column(
            "scope",
            sa.String(length=200),
            nullable=False,
            comment="what is counted, e.g. a budget",
        ),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "used",
            sa.Numeric(precision=24, scale=6),
            nullable=False,
            comment="settled: what turns spent",
        ),
        sa.Column(
            "leased",
            sa.Numeric(precision=24, scale=6),
            nullable=False,
            comment="handed to serving processes and not yet settled or returned",
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "period_start", name=op.f("pk_quota_counters")),
    )


def downgrade() -> None:
    op.drop_table("quota_counters")
