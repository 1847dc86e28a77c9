"""generation changes: which resources each applied generation created, updated or deleted,
so serving processes read only those rows

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generation_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "generation",
            sa.BigInteger(),
            nullable=False,
            comment="the generation whose apply made this change",
        ),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.CheckConstraint(
            "action IN ('create', 'update', 'delete')", name=op.f("ck_generation_changes_action")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generation_changes")),
    )
    with op.batch_alter_table("generation_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_generation_changes_generation"), ["generation"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("generation_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_generation_changes_generation"))
    op.drop_table("generation_changes")
