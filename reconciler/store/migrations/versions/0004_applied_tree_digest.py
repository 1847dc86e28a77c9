"""applied tree digest

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("state", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "last_applied_digest",
                sa.String(length=80),
                nullable=True,
                comment="what the applied revision's files were read from (git tree and path)",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("state", schema=None) as batch_op:
        batch_op.drop_column("last_applied_digest")
