"""The trace a task or workflow run belongs to: the W3C `traceparent` of the
call that created it, so the worker that runs it continues that trace.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("tasks", "workflow_runs")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("trace_context", sa.String(128), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("trace_context")
