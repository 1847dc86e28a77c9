"""fingerprint key: plaintext-secret fingerprints are keyed (HMAC) per database

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 01:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("state", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "fingerprint_key",
                sa.String(length=64),
                nullable=True,
                comment="random HMAC key of plaintext-secret fingerprints (not a secret's value)",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("state", schema=None) as batch_op:
        batch_op.drop_column("fingerprint_key")
