"""The run driver: how a workflow run moves when its tasks do.

Everything here happens inside the transaction that changed a task: a node
finishing, the decision about its children, their tasks being queued and the
run's events are committed together. That transaction is the checkpoint, so
a server that dies at any point leaves either all of it or none of it, and a
finished node never runs again.

Lock order, for every transaction that touches runs and their tasks
(PostgreSQL row locks; SQLite has a single writer):

1. task rows first: the tasks the transaction is about (a worker's reports,
   a claim, a user's cancel or update, the reaper's overdue tasks);
   CancelWorkflowRun takes every task of its run, in id order, before the run;
2. then the runs of those tasks, all at once and in id order (`settle`);
3. then what the runs decide: children inserted (new rows nobody waits
   for), the run's other tasks cancelled when it stops.

Two cycles remain that no order removes. Step 3's cancel takes a task row
after a run row: a node that fails and cancels a sibling whose own report
holds that sibling and waits for the run. And a worker's report transaction
settles twice, for its reports and then for the tasks it claims, so a run
first met in the second round is taken after those of the first. PostgreSQL
breaks such a deadlock by aborting one side (after its deadlock_timeout,
1 s by default), and `Journal.transact` runs that side again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from orchestrator import tracing
from orchestrator.engine.cancellation import cancel_task
from orchestrator.engine.expressions import Expression, ExpressionError, context
from orchestrator.engine.graph import Plan, plan
from orchestrator.engine.journal import Changes
from orchestrator.engine.run_state import RunState
from orchestrator.engine.validation import MAX_KEY, payload_problem
from orchestrator.model import (
    Concurrency,
    NewTask,
    NodeRun,
    NodeStatus,
    Origin,
    RateLimit,
    RunStatus,
    Task,
    TaskEvent,
    TaskEventType,
    Workflow,
    WorkflowEventType,
    WorkflowRun,
)
from orchestrator.store import runs as run_store
from orchestrator.store import tasks as task_store
from orchestrator.store import workflows as workflow_store

log = logging.getLogger(__name__)

_PARENT_DONE = {NodeStatus.SUCCEEDED, NodeStatus.SKIPPED}


class RunDriver:
    def __init__(
        self,
        *,
        max_payload_bytes: int,
        default_max_attempts: int,
        on_queued: Callable[[], None],
        on_cancelled: Callable[[Task, str], None],
    ) -> None:
        self._max_payload = max_payload_bytes
        self._default_max_attempts = default_max_attempts
        self._on_queued = on_queued
        self._on_cancelled = on_cancelled
        self._plans: dict[tuple[str, int], Plan] = {}

    def plan_of(self, workflow: Workflow) -> Plan:
        """Versions never change, so a plan is compiled once per version."""
        key = (workflow.id, workflow.version)
        if key not in self._plans:
            self._plans[key] = plan(workflow.definition, self._max_payload)
        return self._plans[key]

    async def start(
        self,
        changes: Changes,
        run_id: str,
        workflow: Workflow,
        owner_id: str,
        run_input: dict[str, Any],
        *,
        not_before: datetime | None = None,
        origin: Origin | None = None,
    ) -> WorkflowRun:
        """A new run, its first nodes queued (to start no earlier than
        `not_before`); `origin`: the schedule that fired it."""
        run = WorkflowRun(
            id=run_id,
            workflow_id=workflow.id,
            version=workflow.version,
            owner_id=owner_id,
            status=RunStatus.RUNNING,
            input=run_input,
            error="",
            created_at=changes.now,
            finished_at=None,
            last_sequence=0,
            nodes=tuple(
                NodeRun(n.id, NodeStatus.PENDING, None, None, "", None, None)
                for n in workflow.definition.nodes
            ),
            not_before=not_before,
            origin=origin,
            trace_context=tracing.current_traceparent(),
        )
        await run_store.insert(changes.conn, run)
        state = RunState.of(run, self.plan_of(workflow), changes.run_events, changes.now)
        changes.runs[run.id] = state
        state.emit(WorkflowEventType.RUN_STARTED)
        for root in state.plan.roots:
            await self._consider(changes, state, root)
        await state.save(changes.conn)
        return run

    async def settle(self, changes: Changes) -> None:
        """React to the events of node tasks in this transaction not yet seen,
        including those of tasks queued or cancelled while reacting. Called
        again later in the same transaction, it picks up where it stopped."""
        pending = changes.node_events[changes.node_events_settled :]
        await run_store.lock(
            changes.conn,
            {t.workflow_run_id for t, _ in pending if t.workflow_run_id} - changes.runs.keys(),
        )
        while changes.node_events_settled < len(changes.node_events):
            task, event = changes.node_events[changes.node_events_settled]
            changes.node_events_settled += 1
            state = await self.state(changes, task.workflow_run_id or "")
            if state is None or not state.running:
                continue
            node = state.nodes.get(task.node_id or "")
            if node is None or node.task_id != task.id or node.status.finished:
                continue
            await self._on_task_event(changes, state, node, task, event)
        for state in changes.runs.values():
            await state.save(changes.conn)

    async def state(self, changes: Changes, run_id: str) -> RunState | None:
        if run_id in changes.runs:
            return changes.runs[run_id]
        run = await run_store.get(changes.conn, run_id, lock=True)
        if run is None:
            return None
        known = self._plans.get((run.workflow_id, run.version))
        if known is None:
            workflow = await workflow_store.get(changes.conn, run.workflow_id, run.version)
            if workflow is None:
                return None
            known = self.plan_of(workflow)
        state = RunState.of(run, known, changes.run_events, changes.now)
        changes.runs[run_id] = state
        return state

    async def _on_task_event(
        self, changes: Changes, state: RunState, node: NodeRun, task: Task, event: TaskEvent
    ) -> None:
        conn = changes.conn
        match event.type:
            case TaskEventType.STARTED:
                await state.set_node(
                    conn, node.node_id, status=NodeStatus.RUNNING, started_at=changes.now
                )
                state.emit(WorkflowEventType.NODE_STARTED, node.node_id)
            case TaskEventType.PROGRESS:
                state.emit(
                    WorkflowEventType.NODE_PROGRESS,
                    node.node_id,
                    message=event.message,
                    progress=event.progress,
                )
            case TaskEventType.RETRYING | TaskEventType.REQUEUED:
                await state.set_node(conn, node.node_id, status=NodeStatus.QUEUED)
                state.emit(WorkflowEventType.NODE_QUEUED, node.node_id, message=event.message)
            case TaskEventType.SUCCEEDED:
                output = event.output or {}
                await state.set_node(
                    conn,
                    node.node_id,
                    status=NodeStatus.SUCCEEDED,
                    output=output,
                    finished_at=changes.now,
                )
                state.emit(WorkflowEventType.NODE_SUCCEEDED, node.node_id, output=output)
                for child in state.plan.children.get(node.node_id, []):
                    await self._consider(changes, state, child)
                # Unless deciding the children failed the run, the checkpoint
                # comes before the run's end: a follower sees both.
                if state.running:
                    state.emit(WorkflowEventType.CHECKPOINT_SAVED, node.node_id)
                    self._finish_if_done(state)
            case TaskEventType.FAILED | TaskEventType.CANCELLED:
                failed = event.type is TaskEventType.FAILED
                await state.set_node(
                    conn,
                    node.node_id,
                    status=NodeStatus.FAILED if failed else NodeStatus.CANCELLED,
                    error=event.message,
                    finished_at=changes.now,
                )
                state.emit(
                    WorkflowEventType.NODE_FAILED if failed else WorkflowEventType.NODE_CANCELLED,
                    node.node_id,
                    message=event.message,
                )
                verb = "failed" if failed else "was cancelled"
                await self.stop(
                    changes,
                    state,
                    RunStatus.FAILED,
                    f"node {node.node_id!r} {verb}: {event.message}",
                )

    async def _consider(self, changes: Changes, state: RunState, node_id: str) -> None:
        """Queue the node if its parents are done and an incoming edge allows
        it; skip it (and what then can no longer run) if none does."""
        if not state.running or state.nodes[node_id].status is not NodeStatus.PENDING:
            return
        edges = state.plan.incoming.get(node_id, [])
        if any(state.nodes[state.plan.edge(i).source].status not in _PARENT_DONE for i in edges):
            return
        scope = context(state.run.input, state.outputs())
        try:
            allowed = not edges or any(self._allows(state, i, scope) for i in edges)
            node_input = self._input(state, node_id, scope) if allowed else {}
            limits = _limits(state.plan, node_id, scope) if allowed else _NO_LIMITS
        except ExpressionError as exc:
            await self._fail_node(changes, state, node_id, str(exc))
            return
        if not allowed:
            await state.set_node(
                changes.conn, node_id, status=NodeStatus.SKIPPED, finished_at=changes.now
            )
            state.emit(WorkflowEventType.NODE_SKIPPED, node_id)
            for child in state.plan.children.get(node_id, []):
                await self._consider(changes, state, child)
            return
        if problem := payload_problem(node_input, self._max_payload):
            await self._fail_node(changes, state, node_id, f"input {problem}")
            return
        await self._queue(changes, state, node_id, node_input, limits)

    def _allows(self, state: RunState, edge_index: int, scope: dict[str, Any]) -> bool:
        edge = state.plan.edge(edge_index)
        if state.nodes[edge.source].status is not NodeStatus.SUCCEEDED:
            return False
        condition = state.plan.conditions.get(edge_index)
        if condition is None:
            return True
        verdict = condition.evaluate(scope)
        if not isinstance(verdict, bool):
            raise ExpressionError(f"{condition.source!r}: yielded {verdict!r}, not a bool")
        return verdict

    def _input(self, state: RunState, node_id: str, scope: dict[str, Any]) -> dict[str, Any]:
        literal = dict(state.plan.nodes[node_id].input)
        expression = state.plan.inputs.get(node_id)
        if expression is None:
            return literal
        computed = expression.evaluate(scope)
        if not isinstance(computed, dict):
            raise ExpressionError(f"{expression.source!r}: yielded {computed!r}, not a map")
        return {**literal, **computed}

    async def _queue(
        self,
        changes: Changes,
        state: RunState,
        node_id: str,
        node_input: dict[str, Any],
        limits: tuple[Concurrency | None, RateLimit | None],
    ) -> None:
        spec = state.plan.nodes[node_id]
        new = NewTask(
            title=node_id,
            type=spec.type,
            input=node_input,
            start=True,
            description=spec.description,
            max_attempts=spec.max_attempts or self._default_max_attempts,
            timeout_seconds=spec.timeout_seconds,
            # The run's start time holds for its first nodes; later ones
            # follow nodes that could only start after it.
            not_before=state.run.not_before,
            concurrency=limits[0],
            rate_limit=limits[1],
        )
        (task,) = await task_store.insert_many(
            changes.conn,
            [
                task_store.NewRow(
                    state.run.owner_id,
                    new,
                    state.id,
                    node_id,
                    trace_context=state.run.trace_context,
                )
            ],
            changes.now,
        )
        changes.record(task, TaskEventType.QUEUED)
        await state.set_node(changes.conn, node_id, status=NodeStatus.QUEUED, task_id=task.id)
        state.emit(WorkflowEventType.NODE_QUEUED, node_id)
        changes.after_commit.append(self._on_queued)

    async def _fail_node(self, changes: Changes, state: RunState, node_id: str, error: str) -> None:
        await state.set_node(
            changes.conn, node_id, status=NodeStatus.FAILED, error=error, finished_at=changes.now
        )
        state.emit(WorkflowEventType.NODE_FAILED, node_id, message=error)
        await self.stop(changes, state, RunStatus.FAILED, f"node {node_id!r} failed: {error}")

    def _finish_if_done(self, state: RunState) -> None:
        if state.running and all(n.status.finished for n in state.nodes.values()):
            state.status = RunStatus.SUCCEEDED
            state.emit(WorkflowEventType.RUN_SUCCEEDED)

    async def stop(self, changes: Changes, state: RunState, status: RunStatus, reason: str) -> None:
        """End the run: nodes not started are cancelled, running tasks are
        cancelled at their workers."""
        state.status = status
        state.error = reason
        for node in list(state.nodes.values()):
            if node.status.finished:
                continue
            if node.task_id:
                await cancel_task(changes, node.task_id, reason, self._on_cancelled)
            await state.set_node(
                changes.conn, node.node_id, status=NodeStatus.CANCELLED, finished_at=changes.now
            )
            state.emit(WorkflowEventType.NODE_CANCELLED, node.node_id, message=reason)
        state.emit(
            WorkflowEventType.RUN_FAILED
            if status is RunStatus.FAILED
            else WorkflowEventType.RUN_CANCELLED,
            message=reason,
        )


_NO_LIMITS: tuple[Concurrency | None, RateLimit | None] = (None, None)


def _limits(
    plan: Plan, node_id: str, scope: dict[str, Any]
) -> tuple[Concurrency | None, RateLimit | None]:
    """The node's concurrency key and rate bucket, computed for this run."""
    spec = plan.nodes[node_id]
    concurrency = rate = None
    if (key := plan.concurrency_keys.get(node_id)) is not None:
        concurrency = Concurrency(
            _name(key, scope), spec.concurrency_limit, spec.concurrency_strategy
        )
    if (bucket := plan.rate_buckets.get(node_id)) is not None:
        rate = RateLimit(_name(bucket, scope), spec.rate_limit, spec.rate_limit_period_seconds)
    return concurrency, rate


def _name(expression: Expression, scope: dict[str, Any]) -> str:
    value = expression.evaluate(scope)
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_KEY:
        raise ExpressionError(
            f"{expression.source!r}: yielded {value!r}, not a string of 1 to {MAX_KEY} characters"
        )
    # A run's input may hold NUL in its strings; a key column cannot (PostgreSQL
    # refuses the whole transaction), and requests refuse it in keys as well.
    if "\x00" in value:
        raise ExpressionError(f"{expression.source!r}: yielded a string holding NUL")
    return value
