"""Workflows as users see them: definitions and their versions, runs."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from orchestrator.auth.identity import Identity
from orchestrator.engine import pages
from orchestrator.engine.events import EventHub
from orchestrator.engine.graph import plan
from orchestrator.engine.journal import Changes, Journal
from orchestrator.engine.runs import RunDriver
from orchestrator.engine.validation import MAX_DESCRIPTION, payload_problem
from orchestrator.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from orchestrator.model import (
    RUN_ENDING_EVENTS,
    Definition,
    RunStatus,
    Workflow,
    WorkflowEvent,
    WorkflowRun,
)
from orchestrator.store import Database
from orchestrator.store import runs as run_store
from orchestrator.store import workflows as workflow_store
from orchestrator.store.types import utcnow

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class WorkflowEngine:
    def __init__(
        self,
        database: Database,
        journal: Journal,
        hub: EventHub[WorkflowEvent],
        driver: RunDriver,
        *,
        max_payload_bytes: int,
    ) -> None:
        self._db = database
        self._journal = journal
        self._hub = hub
        self._driver = driver
        self._max_payload = max_payload_bytes

    def validate(self, definition: Definition) -> list[str]:
        """The order the nodes could run in; InvalidArgument listing every problem."""
        return plan(definition, self._max_payload).order

    async def create(
        self, caller: Identity, name: str, description: str, definition: Definition
    ) -> Workflow:
        _check_meta(name, description)
        self.validate(definition)
        async with self._db.write() as conn:
            workflow = await workflow_store.create(
                conn, caller.user_id, name, description, definition, utcnow()
            )
        if workflow is None:
            raise AlreadyExists(f"you already have a workflow named {name!r}")
        return workflow

    async def get(self, caller: Identity, workflow_id: str, version: int = 0) -> Workflow:
        if version < 0:
            raise InvalidArgument.field("version", "must not be negative")
        async with self._db.read() as conn:
            workflow = await workflow_store.get(conn, workflow_id, version or None)
        if workflow is None or not (caller.is_admin or workflow.owner_id == caller.user_id):
            raise NotFound(
                f"workflow {workflow_id}"
                + (f" version {version}" if version else "")
                + " not found"
            )
        return workflow

    async def list_workflows(
        self, caller: Identity, page_size: int, page_token: str
    ) -> tuple[list[Workflow], str]:
        limit = pages.page_size(page_size)
        async with self._db.read() as conn:
            found = await workflow_store.page(
                conn,
                owner_id=None if caller.is_admin else caller.user_id,
                after=pages.decode(page_token),
                limit=limit + 1,
            )
        return pages.cut(found, limit)

    async def update(
        self, caller: Identity, workflow_id: str, description: str, definition: Definition
    ) -> Workflow:
        current = await self.get(caller, workflow_id)
        _check_meta(current.name, description)
        self.validate(definition)
        async with self._db.write() as conn:
            version = await workflow_store.add_version(
                conn, workflow_id, description, definition, utcnow()
            )
        return await self.get(caller, workflow_id, version)

    async def delete(self, caller: Identity, workflow_id: str) -> None:
        await self.get(caller, workflow_id)
        async with self._db.write() as conn:
            if not await workflow_store.remove(conn, workflow_id):
                raise FailedPrecondition(
                    f"workflow {workflow_id} has runs in progress: cancel them first"
                )

    async def start(
        self,
        caller: Identity,
        workflow_id: str,
        version: int,
        run_input: dict[str, Any],
        *,
        not_before: datetime | None = None,
    ) -> WorkflowRun:
        """A new run; its first nodes start no earlier than `not_before`."""
        workflow = await self.get(caller, workflow_id, version)
        if problem := payload_problem(run_input, self._max_payload):
            raise InvalidArgument.field("input", problem)
        run_id = str(uuid.uuid4())

        async def start(changes: Changes) -> WorkflowRun:
            return await self._driver.start(
                changes, run_id, workflow, workflow.owner_id, run_input, not_before=not_before
            )

        return await self._journal.transact(start)

    async def get_run(self, caller: Identity, run_id: str) -> WorkflowRun:
        async with self._db.read() as conn:
            run = await run_store.get(conn, run_id)
        if run is None or not (caller.is_admin or run.owner_id == caller.user_id):
            raise NotFound(f"workflow run {run_id} not found")
        return run

    async def list_runs(
        self,
        caller: Identity,
        workflow_id: str | None,
        status: RunStatus | None,
        page_size: int,
        page_token: str,
    ) -> tuple[list[WorkflowRun], str]:
        limit = pages.page_size(page_size)
        async with self._db.read() as conn:
            found = await run_store.page(
                conn,
                owner_id=None if caller.is_admin else caller.user_id,
                workflow_id=workflow_id,
                status=status,
                after=pages.decode(page_token),
                limit=limit + 1,
            )
        return pages.cut(found, limit)

    async def cancel_run(self, caller: Identity, run_id: str, reason: str) -> WorkflowRun:
        await self.get_run(caller, run_id)
        reason = reason or "cancelled by user"

        async def cancel(changes: Changes) -> None:
            # Tasks before their run: the order every transaction keeps (engine/runs.py).
            await run_store.lock_tasks(changes.conn, run_id)
            state = await self._driver.state(changes, run_id)
            assert state is not None
            if not state.running:
                raise FailedPrecondition(f"workflow run {run_id} is already {state.status.value}")
            await self._driver.stop(changes, state, RunStatus.CANCELLED, reason)

        await self._journal.transact(cancel)
        return await self.get_run(caller, run_id)

    async def follow(
        self, caller: Identity, run_id: str, after_sequence: int
    ) -> AsyncIterator[WorkflowEvent]:
        """Events after `after_sequence`, then live ones, until the run ends."""
        if after_sequence < 0:
            raise InvalidArgument.field("after_sequence", "must not be negative")
        run = await self.get_run(caller, run_id)
        if run.status is not RunStatus.RUNNING and run.last_sequence <= after_sequence:
            return

        async def read_log(after: int, limit: int) -> list[WorkflowEvent]:
            async with self._db.read() as conn:
                events = await run_store.events_after(conn, run_id, after, limit)
            if not events and after < run.last_sequence:
                # Events known to exist are gone: the run was deleted (with its
                # workflow, or by retention) while its log was being replayed.
                raise NotFound(f"workflow run {run_id} not found")
            return events

        async def is_last(event: WorkflowEvent) -> bool:
            return event.type in RUN_ENDING_EVENTS

        async for event in self._hub.follow(run_id, after_sequence, read_log, is_last):
            yield event


def _check_meta(name: str, description: str) -> None:
    problems = []
    if not NAME.match(name):
        problems.append(
            FieldViolation(
                "name", "1-128 letters, digits or _.:- , starting with a letter or digit"
            )
        )
    if len(description) > MAX_DESCRIPTION:
        problems.append(FieldViolation("description", f"at most {MAX_DESCRIPTION} characters"))
    if problems:
        raise InvalidArgument(violations=problems)
