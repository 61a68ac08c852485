"""Login failures shared by the replicas, and a count of lost deliveries
per task.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("id", _SERIAL, nullable=False, autoincrement=True),
        sa.Column("key", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_login_failures"),
    )
    op.create_index("ix_login_failures_key_created_at", "login_failures", ["key", "created_at"])
    op.create_index("ix_login_failures_created_at", "login_failures", ["created_at"])
    # A default only to fill the rows that exist now; the code sets it since.
    op.add_column(
        "tasks", sa.Column("lost_deliveries", sa.Integer(), nullable=False, server_default="0")
    )
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column("lost_deliveries", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("lost_deliveries")
    op.drop_table("login_failures")
