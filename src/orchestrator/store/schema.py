"""The tables, as SQLAlchemy Core. Migrations build exactly this (a test
compares them)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from orchestrator.store.types import UtcDateTime

# A 64-bit key that SQLite also numbers by itself (only INTEGER PRIMARY KEY
# is its rowid).
Serial = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# One row per refresh token. Rotation links tokens into a family; reuse of a
# rotated token revokes the family.
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("family_id", String(36), nullable=False),
    Column("refresh_token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("rotated_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index(None, "family_id"),
    Index(None, "user_id"),
)

# Long-lived credentials for workers and automation; only a hash is kept.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("last_used_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index(None, "owner_id"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("title", String(200), nullable=False),
    Column("type", String(128), nullable=False),
    Column("description", Text, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("priority", Integer, nullable=False),
    # -priority: lets one ascending index give "highest priority, oldest
    # first" on every dialect.
    Column("dispatch_rank", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("input", JSON, nullable=False),
    Column("output", JSON, nullable=True),
    Column("error", Text, nullable=False),
    # Attempts that counted toward max_attempts (a lost worker's does not).
    Column("attempt", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    # Attempts whose worker vanished (disconnect, lease expiry): bounded, so a
    # task that kills every worker it reaches ends instead of looping.
    Column("lost_deliveries", Integer, nullable=False),
    Column("timeout_seconds", Integer, nullable=False),
    Column("idempotency_key", String(128), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # Dispatch order among equal priorities; not claimable before available_at
    # (retry backoff).
    Column("queued_at", UtcDateTime, nullable=True),
    Column("available_at", UtcDateTime, nullable=True),
    Column("started_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("progress", Integer, nullable=False),
    Column("progress_message", Text, nullable=False),
    Column("worker_id", String(64), nullable=True),
    # Bumped at every claim: a report carrying an older token is refused.
    Column("fencing_token", BigInteger, nullable=False),
    Column("lease_expires_at", UtcDateTime, nullable=True),
    Column("deadline_at", UtcDateTime, nullable=True),
    Column("last_sequence", BigInteger, nullable=False),
    Column("workflow_run_id", String(36), nullable=True),
    Column("node_id", String(128), nullable=True),
    # As asked for; available_at is when a claim may take it.
    Column("not_before", UtcDateTime, nullable=True),
    Column("concurrency_key", String(128), nullable=True),
    Column("concurrency_limit", Integer, nullable=True),
    Column("concurrency_strategy", String(16), nullable=True),
    Column("rate_bucket", String(128), nullable=True),
    Column("rate_limit", Integer, nullable=True),
    Column("rate_period_seconds", Integer, nullable=True),
    Column("schedule_id", String(36), nullable=True),
    Column("scheduled_at", UtcDateTime, nullable=True),
    # The W3C traceparent of the call that created it (orchestrator.tracing).
    Column("trace_context", String(128), nullable=True),
    UniqueConstraint("owner_id", "idempotency_key"),
    # The dispatch order within one type: a claim reads the first rows of
    # each of its types (see store/claiming.py) instead of sorting the
    # whole queue (which made a backlog of N tasks cost N² to drain) or
    # walking past another type's backlog.
    # available_at comes last: it orders nothing, but a claim reads it from the
    # index, so tasks not yet due (a start time, a retry's backoff) are passed
    # over without reading their rows.
    Index(
        "ix_tasks_dispatch_order_by_type",
        "status",
        "type",
        "dispatch_rank",
        "queued_at",
        "id",
        "available_at",
    ),
    Index(None, "status", "created_at"),
    # Retention: the oldest finished first.
    Index(None, "finished_at"),
    Index(None, "owner_id", "created_at"),
    Index(None, "worker_id"),
    # Tasks of one key by status: how many run, which wait.
    Index(None, "owner_id", "concurrency_key", "status"),
    # A scheduled time starts one task, whichever replica fires it.
    Index(None, "schedule_id", "scheduled_at", unique=True),
)

# The durable event log of every task: one row per change, numbered per task.
task_events = Table(
    "task_events",
    metadata,
    Column("task_id", String(36), ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("progress", Integer, nullable=False),
    Column("message", Text, nullable=False),
    Column("output", JSON, nullable=True),
    Column("worker_id", String(64), nullable=True),
)

workflows = Table(
    "workflows",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("latest_version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("owner_id", "name"),
)

# Versions are never changed once stored: a run keeps the one it began with.
workflow_versions = Table(
    "workflow_versions",
    metadata,
    Column(
        "workflow_id",
        String(36),
        ForeignKey("workflows.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("definition", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

workflow_runs = Table(
    "workflow_runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "workflow_id", String(36), ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False
    ),
    Column("version", Integer, nullable=False),
    Column("owner_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("input", JSON, nullable=False),
    Column("error", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("last_sequence", BigInteger, nullable=False),
    Column("not_before", UtcDateTime, nullable=True),
    Column("schedule_id", String(36), nullable=True),
    Column("scheduled_at", UtcDateTime, nullable=True),
    Column("trace_context", String(128), nullable=True),
    Index(None, "owner_id", "created_at"),
    Index(None, "workflow_id", "created_at"),
    Index(None, "finished_at"),
    Index(None, "schedule_id", "scheduled_at", unique=True),
)

run_nodes = Table(
    "run_nodes",
    metadata,
    Column(
        "run_id", String(36), ForeignKey("workflow_runs.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("node_id", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("task_id", String(36), nullable=True),
    Column("output", JSON, nullable=True),
    Column("error", Text, nullable=False),
    Column("started_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
)

workflow_events = Table(
    "workflow_events",
    metadata,
    Column(
        "run_id", String(36), ForeignKey("workflow_runs.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("type", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("node_id", String(128), nullable=False),
    Column("node_status", String(16), nullable=True),
    Column("task_id", String(36), nullable=True),
    Column("output", JSON, nullable=True),
    Column("message", Text, nullable=False),
    Column("progress", Integer, nullable=False),
)

# Failed logins, shared by the replicas: one row per failure and key
# ("user:NAME" or "peer:ADDRESS"), counted over the throttling window.
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("key", String(320), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "key", "created_at"),
    Index(None, "created_at"),
)

# Rate limits as a virtual schedule (GCRA): a bucket's next start may not
# come before `next_at`; each start moves it on by the bucket's spacing.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("owner_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("next_at", UtcDateTime, nullable=False),
)

# A schedule and where its firing stands. `next_fire_at` is the next
# scheduled time not fired yet (None: paused or past its end); each fire
# moves it on in the transaction that starts the fire's task or run.
schedules = Table(
    "schedules",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("cron", String(256), nullable=False),
    Column("interval_seconds", Integer, nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("start_at", UtcDateTime, nullable=True),
    Column("end_at", UtcDateTime, nullable=True),
    Column("jitter_seconds", Integer, nullable=False),
    Column("overlap", String(16), nullable=False),
    Column("catchup_window_seconds", Integer, nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("note", Text, nullable=False),
    # What a fire starts: a task template, or a workflow with its input.
    Column("task", JSON, nullable=True),
    Column("workflow_id", String(36), nullable=True),
    Column("input", JSON, nullable=True),
    Column("next_fire_at", UtcDateTime, nullable=True),
    # When next_fire_at fires, its jitter added: what the fire loop scans.
    Column("due_at", UtcDateTime, nullable=True),
    # A time held back by the BUFFER_ONE overlap policy.
    Column("buffered_at", UtcDateTime, nullable=True),
    Column("last_fired_at", UtcDateTime, nullable=True),
    Column("last_task_id", String(36), nullable=True),
    Column("last_run_id", String(36), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("owner_id", "name"),
    Index(None, "due_at"),
)
# The few schedules holding a buffered time, found without a scan.
Index(
    "ix_schedules_buffered_at",
    schedules.c.buffered_at,
    sqlite_where=schedules.c.buffered_at.is_not(None),
    postgresql_where=schedules.c.buffered_at.is_not(None),
)

# Each time a schedule fired (its loop, TriggerSchedule, BackfillSchedule):
# what "already fired" means. Not the tasks and runs themselves, which
# retention and DeleteTask remove; these go only with their schedule.
schedule_fires = Table(
    "schedule_fires",
    metadata,
    Column(
        "schedule_id",
        String(36),
        ForeignKey("schedules.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("scheduled_at", UtcDateTime, primary_key=True),
    # Retention: the oldest first.
    Index(None, "scheduled_at"),
)
