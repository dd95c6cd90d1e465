"""used_jti: JWT ids already accepted (replay store shared by every instance).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_jti",
        sa.Column("iss", sa.String(length=512), nullable=False),
        sa.Column("jti", sa.String(length=256), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("iss", "jti"),
    )
    op.create_index("ix_used_jti_expires_at", "used_jti", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_used_jti_expires_at", table_name="used_jti")
    op.drop_table("used_jti")
