"""Dispatch order within a type (which serves every claim, so the order
across types goes), and finished rows by age (for retention).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_tasks_dispatch_order_by_type",
        "tasks",
        ["status", "type", "dispatch_rank", "queued_at", "id"],
    )
    op.drop_index("ix_tasks_dispatch_order", table_name="tasks")
    op.create_index("ix_tasks_finished_at", "tasks", ["finished_at"])
    op.create_index("ix_workflow_runs_finished_at", "workflow_runs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_workflow_runs_finished_at", table_name="workflow_runs")
    op.drop_index("ix_tasks_finished_at", table_name="tasks")
    op.create_index(
        "ix_tasks_dispatch_order", "tasks", ["status", "dispatch_rank", "queued_at", "id"]
    )
    op.drop_index("ix_tasks_dispatch_order_by_type", table_name="tasks")
