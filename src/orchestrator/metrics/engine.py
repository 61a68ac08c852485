"""Task, workflow and storage series, driven from one place: the journal's
watch, told of every committed transaction with the events it published,
and of every transaction that failed with a database error.

Counting from committed events (never from the code paths that make them)
counts each change once, a retried transaction's rolled-back tries not at
all, and needs no call anywhere else in the engine.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from orchestrator.engine.journal import Changes
from orchestrator.errors import Aborted, Unavailable
from orchestrator.model import TaskEventType, WorkflowEventType

FINISHED = {
    TaskEventType.SUCCEEDED: "succeeded",
    TaskEventType.FAILED: "failed",
    TaskEventType.CANCELLED: "cancelled",
}
RUN_FINISHED = {
    WorkflowEventType.RUN_SUCCEEDED: "succeeded",
    WorkflowEventType.RUN_FAILED: "failed",
    WorkflowEventType.RUN_CANCELLED: "cancelled",
}
# The reasons the engine gives a REQUEUED event (engine/attempts.py, the
# dispatcher); any other is a worker that went away.
REQUEUE_REASONS = {"lease expired": "lease_expired", "handed back by worker": "handed_back"}
TRANSACTION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
HANDOFF_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)


class EngineMetrics:
    """The journal's watch (`engine.journal.JournalWatch`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.created = counter(
            "orchestrator_tasks_created",
            "Tasks queued for the first time (created started, or a PENDING task started).",
            "type",
        )
        self.started = counter(
            "orchestrator_tasks_started", "Attempts started on a worker.", "type"
        )
        self.finished = counter(
            "orchestrator_tasks_finished",
            "Tasks that reached an end: succeeded, failed (no attempt left) or cancelled.",
            "outcome",
            "type",
        )
        self.retries = counter(
            "orchestrator_task_retries", "Failed attempts queued again to retry.", "type"
        )
        self.requeued = counter(
            "orchestrator_tasks_requeued",
            "Attempts given back to the queue without counting: reason lease_expired "
            "(a lost delivery the reaper found), worker_lost (its worker went away), "
            "handed_back (the worker gave it back).",
            "type",
            "reason",
        )
        self.runs_started = counter("orchestrator_workflow_runs_started", "Workflow runs started.")
        self.runs_finished = counter(
            "orchestrator_workflow_runs_finished",
            "Workflow runs that reached an end, by outcome.",
            "outcome",
        )
        self.handoff = Histogram(
            "orchestrator_workflow_node_handoff_seconds",
            "From a node's task being queued (its parents finished, or its run "
            "started) to its first attempt starting on a worker.",
            buckets=HANDOFF_BUCKETS,
            registry=registry,
        )
        self.transaction = Histogram(
            "orchestrator_transaction_seconds",
            "Write transactions, from asking for the database to the commit.",
            buckets=TRANSACTION_BUCKETS,
            registry=registry,
        )
        self.batch = Histogram(
            "orchestrator_group_commit_batch_size",
            "Task creations written together by one group-commit transaction.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.database_errors = counter(
            "orchestrator_database_errors",
            "Write transactions that failed: unavailable (the database could not "
            "serve) or conflict (lost a race with another; usually run again).",
            "kind",
        )

    def committed(self, changes: Changes, seconds: float) -> None:
        self.transaction.observe(seconds)
        types = changes.task_types
        for event in changes.events:
            kind = event.type
            if kind is TaskEventType.STARTED:
                self.started.labels(types[event.task_id]).inc()
            elif kind in FINISHED:
                self.finished.labels(FINISHED[kind], types[event.task_id]).inc()
            elif kind is TaskEventType.QUEUED and event.sequence == 1:
                self.created.labels(types[event.task_id]).inc()
            elif kind is TaskEventType.RETRYING:
                self.retries.labels(types[event.task_id]).inc()
            elif kind is TaskEventType.REQUEUED:
                reason = REQUEUE_REASONS.get(event.message, "worker_lost")
                self.requeued.labels(types[event.task_id], reason).inc()
        for task, event in changes.node_events:
            # A first start, not delayed on purpose: the time since it was
            # created is the hand-off (its task is created when it is queued).
            if (
                event.type is TaskEventType.STARTED
                and task.attempt == 1
                and task.lost_deliveries == 0
                and task.not_before is None
            ):
                self.handoff.observe((event.created_at - task.created_at).total_seconds())
        for run_event in changes.run_events:
            if run_event.type is WorkflowEventType.RUN_STARTED:
                self.runs_started.inc()
            elif run_event.type in RUN_FINISHED:
                self.runs_finished.labels(RUN_FINISHED[run_event.type]).inc()

    def failed(self, error: Unavailable | Aborted) -> None:
        kind = "conflict" if isinstance(error, Aborted) else "unavailable"
        self.database_errors.labels(kind).inc()

    def batched(self, size: int) -> None:
        self.batch.observe(size)
