"""session owner: the key that opened a chat session

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 01:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chat_sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "opened_by",
                sa.String(length=50),
                nullable=True,
                comment="the SmarterAuthToken whose key opened the session; NULL: no key",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("chat_sessions", schema=None) as batch_op:
        batch_op.drop_column("opened_by")
