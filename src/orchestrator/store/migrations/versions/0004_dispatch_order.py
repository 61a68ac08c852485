"""An index in dispatch order, and one for listing tasks by status.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A default only to fill the rows that exist now; the code sets it since.
    op.add_column(
        "tasks",
        sa.Column("dispatch_rank", sa.Integer(), nullable=False, server_default="0"),
    )
    op.execute("UPDATE tasks SET dispatch_rank = -priority")
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column("dispatch_rank", server_default=None)
    op.drop_index("ix_tasks_status_type_priority_queued_at", table_name="tasks")
    op.create_index(
        "ix_tasks_dispatch_order", "tasks", ["status", "dispatch_rank", "queued_at", "id"]
    )
    op.create_index("ix_tasks_status_created_at", "tasks", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_status_created_at", table_name="tasks")
    op.drop_index("ix_tasks_dispatch_order", table_name="tasks")
    op.create_index(
        "ix_tasks_status_type_priority_queued_at",
        "tasks",
        ["status", "type", "priority", "queued_at"],
    )
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("dispatch_rank")
