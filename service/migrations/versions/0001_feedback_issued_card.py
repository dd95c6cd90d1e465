"""feedback and issued_card tables (the schema before migrations existed).

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service_id", sa.String(length=100), nullable=False),
        sa.Column("card_uuid", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("outcome_timestamp", sa.String(length=40), nullable=False),
        sa.Column("accepted_suggestions", sa.JSON(), nullable=False),
        sa.Column("override_code", sa.String(length=200), nullable=True),
        sa.Column("override_system", sa.String(length=300), nullable=True),
        sa.Column("override_comment", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_feedback_card_uuid", "feedback", ["card_uuid"])
    op.create_index("ix_feedback_service_id", "feedback", ["service_id"])
    op.create_table(
        "issued_card",
        sa.Column("card_uuid", sa.String(length=100), nullable=False),
        sa.Column("service_id", sa.String(length=100), nullable=False),
        sa.Column("hook_instance", sa.String(length=256), nullable=False),
        sa.Column("card_group", sa.String(length=100), nullable=False),
        sa.Column("indicator", sa.String(length=20), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("rule_base", sa.String(length=40), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("card_uuid"),
    )
    op.create_index("ix_issued_card_service_id", "issued_card", ["service_id"])


def downgrade() -> None:
    op.drop_index("ix_issued_card_service_id", table_name="issued_card")
    op.drop_table("issued_card")
    op.drop_index("ix_feedback_service_id", table_name="feedback")
    op.drop_index("ix_feedback_card_uuid", table_name="feedback")
    op.drop_table("feedback")
