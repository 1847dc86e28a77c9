"""client format: allowed origins, styles and the manifest format of an LLM client; the
current format's names of a Provider's logo and terms of service

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("llm_clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("allowed_origins", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "styles",
                sa.JSON(),
                nullable=True,
                comment="Smarter Chat's look (current format), kept",
            )
        )
        batch_op.add_column(
            sa.Column(
                "manifest_format",
                sa.String(length=20),
                nullable=True,
                comment="'current': the file used that format",
            )
        )
    op.execute("UPDATE llm_clients SET allowed_origins = '[]'")
    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "logo", sa.Text(), nullable=True, comment="Smarter's current name of logo_url"
            )
        )
        batch_op.add_column(
            sa.Column(
                "terms_of_service_url",
                sa.Text(),
                nullable=True,
                comment="Smarter's current name of terms_of_use_url",
            )
        )
    with op.batch_alter_table("llm_clients", schema=None) as batch_op:
        batch_op.alter_column("allowed_origins", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.drop_column("terms_of_service_url")
        batch_op.drop_column("logo")
    with op.batch_alter_table("llm_clients", schema=None) as batch_op:
        batch_op.drop_column("manifest_format")
        batch_op.drop_column("styles")
        batch_op.drop_column("allowed_origins")
