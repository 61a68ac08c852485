"""Time and flow control: a task's start time, concurrency key and rate
bucket; where schedules stand; rate buckets.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    for column in (
        sa.Column("not_before", _TIME, nullable=True),
        sa.Column("concurrency_key", sa.String(128), nullable=True),
        sa.Column("concurrency_limit", sa.Integer(), nullable=True),
        sa.Column("concurrency_strategy", sa.String(16), nullable=True),
        sa.Column("rate_bucket", sa.String(128), nullable=True),
        sa.Column("rate_limit", sa.Integer(), nullable=True),
        sa.Column("rate_period_seconds", sa.Integer(), nullable=True),
        sa.Column("schedule_id", sa.String(36), nullable=True),
        sa.Column("scheduled_at", _TIME, nullable=True),
    ):
        op.add_column("tasks", column)
    op.drop_index("ix_tasks_dispatch_order_by_type", table_name="tasks")
    op.create_index(
        "ix_tasks_dispatch_order_by_type",
        "tasks",
        ["status", "type", "dispatch_rank", "queued_at", "id", "available_at"],
    )
    op.create_index(
        "ix_tasks_owner_id_concurrency_key_status",
        "tasks",
        ["owner_id", "concurrency_key", "status"],
    )
    op.create_index(
        "ix_tasks_schedule_id_scheduled_at", "tasks", ["schedule_id", "scheduled_at"], unique=True
    )
    for column in (
        sa.Column("not_before", _TIME, nullable=True),
        sa.Column("schedule_id", sa.String(36), nullable=True),
        sa.Column("scheduled_at", _TIME, nullable=True),
    ):
        op.add_column("workflow_runs", column)
    op.create_index(
        "ix_workflow_runs_schedule_id_scheduled_at",
        "workflow_runs",
        ["schedule_id", "scheduled_at"],
        unique=True,
    )
    op.create_table(
        "rate_buckets",
        sa.Column("owner_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("next_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name="fk_rate_buckets_owner_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("owner_id", "name", name="pk_rate_buckets"),
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("owner_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("cron", sa.String(256), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("start_at", _TIME, nullable=True),
        sa.Column("end_at", _TIME, nullable=True),
        sa.Column("jitter_seconds", sa.Integer(), nullable=False),
        sa.Column("overlap", sa.String(16), nullable=False),
        sa.Column("catchup_window_seconds", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("task", sa.JSON(), nullable=True),
        sa.Column("workflow_id", sa.String(36), nullable=True),
        sa.Column("input", sa.JSON(), nullable=True),
        sa.Column("next_fire_at", _TIME, nullable=True),
        sa.Column("due_at", _TIME, nullable=True),
        sa.Column("buffered_at", _TIME, nullable=True),
        sa.Column("last_fired_at", _TIME, nullable=True),
        sa.Column("last_task_id", sa.String(36), nullable=True),
        sa.Column("last_run_id", sa.String(36), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name="fk_schedules_owner_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sa.UniqueConstraint("owner_id", "name", name="uq_schedules_owner_id_name"),
    )
    op.create_index("ix_schedules_due_at", "schedules", ["due_at"])
    buffered = sa.text("buffered_at IS NOT NULL")
    op.create_index(
        "ix_schedules_buffered_at",
        "schedules",
        ["buffered_at"],
        sqlite_where=buffered,
        postgresql_where=buffered,
    )
    op.create_table(
        "schedule_fires",
        sa.Column("schedule_id", sa.String(36), nullable=False),
        sa.Column("scheduled_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name="fk_schedule_fires_schedule_id_schedules",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("schedule_id", "scheduled_at", name="pk_schedule_fires"),
    )
    op.create_index("ix_schedule_fires_scheduled_at", "schedule_fires", ["scheduled_at"])


def downgrade() -> None:
    op.drop_table("schedule_fires")
    op.drop_table("schedules")
    op.drop_table("rate_buckets")
    op.drop_index("ix_workflow_runs_schedule_id_scheduled_at", table_name="workflow_runs")
    with op.batch_alter_table("workflow_runs") as batch:
        for name in ("scheduled_at", "schedule_id", "not_before"):
            batch.drop_column(name)
    op.drop_index("ix_tasks_schedule_id_scheduled_at", table_name="tasks")
    op.drop_index("ix_tasks_owner_id_concurrency_key_status", table_name="tasks")
    op.drop_index("ix_tasks_dispatch_order_by_type", table_name="tasks")
    op.create_index(
        "ix_tasks_dispatch_order_by_type",
        "tasks",
        ["status", "type", "dispatch_rank", "queued_at", "id"],
    )
    with op.batch_alter_table("tasks") as batch:
        for name in (
            "scheduled_at",
            "schedule_id",
            "rate_period_seconds",
            "rate_limit",
            "rate_bucket",
            "concurrency_strategy",
            "concurrency_limit",
            "concurrency_key",
            "not_before",
        ):
            batch.drop_column(name)
