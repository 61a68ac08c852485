"""The dispatcher: the workers connected to this replica, their free slots,
and the loop that fills those slots with queued tasks.

It wakes when a task is queued here, when a slot frees up, when a retry's
backoff ends, and otherwise polls slowly as a safety net (tasks queued by
another replica, leases re-queued by the reaper). A worker's reports are
applied in order, as many per transaction as have queued up, and the slots
they free are refilled in that same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from orchestrator.auth.identity import Identity
from orchestrator.engine.attempts import AttemptRules, Attempts, Refill
from orchestrator.engine.background import survived
from orchestrator.engine.credentials import CredentialWatch
from orchestrator.engine.journal import Changes, Journal
from orchestrator.engine.reports import FINISHING, AboutTask, Heartbeat, Release, Report
from orchestrator.engine.validation import type_problem
from orchestrator.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Unavailable,
)
from orchestrator.model import Task, TaskStatus
from orchestrator.store import tasks as task_store
from orchestrator.store.types import utcnow

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
# Start times further off than this are left to the poll (a second late at
# most), so a backlog of tasks for next week holds no timers.
WAKE_HORIZON = timedelta(minutes=10)
MAX_SLOTS = 1000
MAX_TASK_TYPES = 256
_CLAIM_BATCH = 100
_REPORT_BATCH = 256
# Reports read from a worker but not yet applied; past this the stream is
# not read, and gRPC flow control slows the worker down.
INBOX_SIZE = 1024
_NAME = re.compile(r"^[\w .:@/-]{1,128}$")


@dataclass(frozen=True)
class Assign:
    task: Task


@dataclass(frozen=True)
class Cancel:
    task_id: str
    fencing_token: int
    reason: str


@dataclass(frozen=True)
class Reject:
    task_id: str
    fencing_token: int
    reason: str


@dataclass(frozen=True)
class Drain:
    reason: str


@dataclass(frozen=True)
class Revoked:
    """The worker's credential stopped working: its stream ends."""


Outbound = Assign | Cancel | Reject | Drain | Revoked | None


@dataclass
class WorkerSession:
    id: str
    name: str
    identity: Identity
    # None: may run anyone's tasks (an admin's worker).
    owner_filter: str | None
    task_types: tuple[str, ...]
    slots: int
    connected_at: datetime
    in_flight: dict[str, int] = field(default_factory=dict)
    draining: bool = False
    # A claim for this worker is under way: another would overfill its slots.
    claiming: bool = False
    # Its last claim found less than it asked for: nothing to claim for it
    # until tasks are queued again (see Dispatcher.wake).
    starved: bool = False
    # None closes the stream.
    outbound: asyncio.Queue[Outbound] = field(default_factory=asyncio.Queue)
    # None: the worker closed its side.
    inbox: asyncio.Queue[Report | None] = field(default_factory=lambda: asyncio.Queue(INBOX_SIZE))
    # Stops the credential watch from ending this session.
    release: Callable[[], None] = lambda: None

    @property
    def free(self) -> int:
        return 0 if self.draining else self.slots - len(self.in_flight)

    def holds(self, task_id: str, fencing_token: int) -> bool:
        return self.in_flight.get(task_id) == fencing_token


@dataclass(frozen=True)
class Claimed:
    """What a claim asked for and got, as of `at` (its transaction's time:
    tasks that became claimable later were not for it to see)."""

    refill: Refill
    tasks: list[Task]
    at: datetime


def _refill(sessions: Sequence[WorkerSession], free: Callable[[WorkerSession], int]) -> Refill:
    """A claim for sessions of one kind (see `_kind`), `free(session)` slots
    each (a draining one takes nothing)."""
    first = sessions[0]
    return Refill(
        first.task_types,
        first.owner_filter,
        first.identity.credential_key,
        [(s.id, 0 if s.draining else min(free(s), _CLAIM_BATCH)) for s in sessions],
    )


def _kind(session: WorkerSession) -> tuple[object, ...]:
    """Sessions that one claim can serve together."""
    return (session.identity.credential_key, session.owner_filter, session.task_types)


def check_hello(name: str, task_types: Sequence[str], slots: int) -> None:
    problems = []
    if not _NAME.match(name):
        problems.append(FieldViolation("hello.name", "1-128 letters, digits, spaces or _.:@/-"))
    if not task_types:
        problems.append(FieldViolation("hello.task_types", "name at least one task type"))
    if len(task_types) > MAX_TASK_TYPES:
        problems.append(FieldViolation("hello.task_types", f"at most {MAX_TASK_TYPES}"))
    for index, task_type in enumerate(task_types):
        if problem := type_problem(task_type):
            problems.append(FieldViolation(f"hello.task_types[{index}]", problem))
    if not 1 <= slots <= MAX_SLOTS:
        problems.append(FieldViolation("hello.slots", f"must be in [1, {MAX_SLOTS}]"))
    if problems:
        raise InvalidArgument(violations=problems)


class Dispatcher:
    def __init__(self, journal: Journal, rules: AttemptRules, credentials: CredentialWatch) -> None:
        self._journal = journal
        self._credentials = credentials
        self.attempts = Attempts(
            journal, rules, on_retry_at=self.wake_at, on_cancelled=self.cancel_assignment
        )
        self._sessions: dict[str, WorkerSession] = {}
        self._wake = asyncio.Event()
        self._woken_at = utcnow()
        # Held tasks that changed on another replica, for the recheck loop.
        self._changed: set[str] = set()
        self._changed_wake = asyncio.Event()
        self._draining = False
        self._background: set[asyncio.Task[object]] = set()

    @property
    def sessions(self) -> list[WorkerSession]:
        return list(self._sessions.values())

    def wake(self) -> None:
        """Tasks may have been queued: every worker may find some again."""
        for session in self._sessions.values():
            session.starved = False
        self._woken_at = utcnow()
        self._wake.set()

    def wake_at(self, when: datetime) -> None:
        """Wake at `when` by the wall clock the claim compares with: a timer
        that fires early (the loop's clock is another) waits again, or its
        round would find nothing and the task wait for the poll."""
        delay = (when - utcnow()).total_seconds()
        if delay <= 0:
            self.wake()
        else:
            asyncio.get_running_loop().call_later(delay, self.wake_at, when)

    async def run(self) -> None:
        """The dispatch loop; runs until cancelled."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            except TimeoutError:
                # The safety net: work queued in a way nobody announced.
                self.wake()
            self._wake.clear()
            with survived("dispatch round"):
                await self._fill_slots()

    async def _fill_slots(self) -> None:
        """One claim per kind of worker, for all of that kind's free slots:
        a round costs the same for one idle worker as for a thousand."""
        for sessions in self._idle(lambda session: not session.starved):
            await self._claim_for(sessions)

    def _idle(self, wanted: Callable[[WorkerSession], bool]) -> Iterable[list[WorkerSession]]:
        """Sessions with free slots and no claim under way that are `wanted`,
        by kind: one claim serves each group."""
        kinds: defaultdict[tuple[object, ...], list[WorkerSession]] = defaultdict(list)
        for session in self._sessions.values():
            if session.free > 0 and not session.claiming and wanted(session):
                kinds[_kind(session)].append(session)
        return kinds.values()

    async def _claim_for(self, sessions: list[WorkerSession]) -> None:
        for session in sessions:
            session.claiming = True

        async def claim(tx: Changes) -> Claimed:
            # Free slots counted once the transaction holds the database: a
            # revocation committed before has drained its sessions by then.
            refill = _refill(sessions, lambda s: s.free if s.id in self._sessions else 0)
            return await self._claim(tx, refill)

        try:
            claimed = await self._journal.transact(claim)
        except (Unavailable, Aborted) as failure:
            # The poll, or the next wake, tries again.
            log.warning("no tasks claimed this round: %s", failure.message)
            return
        finally:
            self._claimed(sessions)
        self._deal(sessions, claimed)

    async def _claim(self, tx: Changes, refill: Refill) -> Claimed:
        # The time as of which the claim sees tasks, read before it: a claim
        # on a key may move the transaction's time on (engine/attempts.py).
        at = tx.now
        return Claimed(refill, await self.attempts.claim(tx, refill), at)

    def _deal(self, sessions: Sequence[WorkerSession], claimed: Claimed) -> None:
        """Claimed tasks to their workers; a claim that found less than it
        asked for starves its workers until tasks are queued again, unless
        a wake came since its transaction's time (a task queued meanwhile, a
        start time come): the claim could not see what that wake announced."""
        asked = sum(count for _, count in claimed.refill.slots)
        got = len(claimed.tasks)
        starve = asked and got < asked and self._woken_at < claimed.at
        if asked and not starve:
            # A full claim: there may be more. One that found less after a
            # wake came: what woke was not for it to see, and the round that
            # wake brought passed over its claiming workers.
            self._wake.set()
        by_worker: defaultdict[str, list[Task]] = defaultdict(list)
        for task in claimed.tasks:
            by_worker[task.worker_id or ""].append(task)
        for session in sessions:
            if starve:
                session.starved = True
            self._hand_out(session, by_worker.get(session.id, []))

    def _hand_out(self, session: WorkerSession, claimed: list[Task]) -> None:
        if not claimed:
            return
        if session.id not in self._sessions:
            # Gone while claiming: its new tasks go straight back.
            self._in_background(
                self.attempts.requeue_worker(
                    session.id, "worker disconnected before its assignment was sent", lost=False
                )
            )
            return
        for task in claimed:
            session.in_flight[task.id] = task.fencing_token
            session.outbound.put_nowait(Assign(task))

    def _in_background(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def claim_within(self, changes: Changes) -> None:
        """Tasks this transaction queued go to idle workers that serve their
        types, in the transaction itself: they start as they are created (or
        as the node before them finishes), with no dispatch round between;
        those queued for later wake this replica at their time."""
        for when in changes.queued_for:
            if when - changes.now <= WAKE_HORIZON:
                changes.after_commit.append(functools.partial(self.wake_at, when))
        queued = changes.queued_types
        for sessions in self._idle(lambda session: not queued.isdisjoint(session.task_types)):
            for session in sessions:
                session.claiming = True
            changes.after_rollback.append(functools.partial(self._claimed, sessions))
            refill = _refill(sessions, lambda s: s.free)
            claimed = await self._claim(changes, refill)
            changes.after_commit.append(functools.partial(self._hand_over, sessions, claimed))

    def _hand_over(self, sessions: Sequence[WorkerSession], claimed: Claimed) -> None:
        """After the commit of a transaction that queued tasks and claimed
        them for these sessions. Its own wake (the tasks it queued, announced
        as it commits) brought them nothing new: as of now, not as of the
        claim, or every create would cost a second, empty claim."""
        self._claimed(sessions)
        self._deal(sessions, replace(claimed, at=utcnow()))

    @staticmethod
    def _claimed(sessions: Sequence[WorkerSession]) -> None:
        for session in sessions:
            session.claiming = False

    def register(
        self, caller: Identity, name: str, task_types: Sequence[str], slots: int
    ) -> WorkerSession:
        check_hello(name, task_types, slots)
        if self._draining:
            raise FailedPrecondition("server is shutting down; connect to another replica")
        session = WorkerSession(
            id=str(uuid.uuid4()),
            name=name,
            identity=caller,
            owner_filter=None if caller.is_admin else caller.user_id,
            task_types=tuple(dict.fromkeys(task_types)),
            slots=slots,
            connected_at=utcnow(),
        )
        self._sessions[session.id] = session
        session.release = self._credentials.hold(caller, lambda: self._revoke(session))
        log.info(
            "worker connected",
            extra={
                "worker_id": session.id,
                "worker_name": name,
                "slots": slots,
                "types": task_types,
            },
        )
        self._wake.set()
        # Pages of workers show it.
        self._journal.feed.changed(())
        return session

    async def unregister(self, session: WorkerSession) -> None:
        session.release()
        self._sessions.pop(session.id, None)
        # A worker that was told to drain and did not finish in time was
        # stopped by the server, not lost.
        requeued = await self.attempts.requeue_worker(
            session.id, "worker disconnected", lost=not session.draining
        )
        log.info("worker disconnected", extra={"worker_id": session.id, "requeued": requeued})
        self._journal.feed.changed(())
        if requeued:
            self._wake.set()

    async def serve(self, session: WorkerSession) -> None:
        """Apply the worker's reports until it closes its side."""
        while (first := await session.inbox.get()) is not None:
            batch = [first]
            closed = False
            while len(batch) < _REPORT_BATCH and not session.inbox.empty():
                report = session.inbox.get_nowait()
                if report is None:
                    closed = True
                    break
                batch.append(report)
            await self._apply(session, batch)
            if closed:
                return

    async def _apply(self, session: WorkerSession, batch: list[Report]) -> None:
        """One transaction for the batch. A report about an attempt that is no
        longer current is answered with a rejection and recorded nowhere.

        A database failure never ends the worker's stream: the batch is tried
        again, whole and in order, until it goes through (a lost race at
        once, an outage until the database is back). Reports whose attempt
        was reaped meanwhile (lease expired) are then refused like any stale
        one; reports that arrive meanwhile wait behind it."""
        if any(isinstance(report, Release) for report in batch):
            # Workers hand work back only when they are stopping.
            session.draining = True

        # The dispatch loop may be claiming for this worker already.
        refill_here = not session.claiming
        if refill_here:
            session.claiming = True
        try:
            refused, refilled = await self._journal.transact_patiently(
                functools.partial(self._record, session=session, batch=batch, refill=refill_here),
                f"reports of worker {session.id}",
            )
        finally:
            if refill_here:
                session.claiming = False
        for report in batch:
            if isinstance(report, FINISHING):
                self._free(session, report.task_id, report.fencing_token)
        for report, reason in refused:
            assert not isinstance(report, Heartbeat)
            self._free(session, report.task_id, report.fencing_token)
            session.outbound.put_nowait(Reject(report.task_id, report.fencing_token, reason))
        if refilled is not None:
            self._deal([session], refilled)

    async def _record(
        self, tx: Changes, *, session: WorkerSession, batch: list[Report], refill: bool
    ) -> tuple[list[tuple[Report, str]], Claimed | None]:
        """The body of `_apply`'s transaction: the refusals, and the refill's
        claim if there was one."""
        refused: list[tuple[Report, str]] = []
        for report in batch:
            try:
                await self.attempts.apply(tx, session.id, report)
            except FailedPrecondition as refusal:
                refused.append((report, refusal.message))
        # A finished node's children are queued now, so the slot it
        # freed can take one of them in this same transaction.
        await self._journal.settle_now(tx)
        if not refill:
            return refused, None
        # Nothing to claim for a starved worker, unless this very
        # transaction queued something (a finished node's children).
        if session.starved and not tx.queued_types:
            return refused, None
        ending: list[AboutTask] = [r for r in batch if isinstance(r, FINISHING)]
        ending += [r for r, _ in refused if not isinstance(r, Heartbeat)]
        freed = {r.task_id for r in ending if session.holds(r.task_id, r.fencing_token)}
        slots = _refill([session], lambda s: s.slots - len(s.in_flight.keys() - freed))
        return refused, await self._claim(tx, slots)

    def _free(self, session: WorkerSession, task_id: str, fencing_token: int) -> None:
        """The slot is free again; the dispatch loop may fill it (unless the
        worker is starved: then it waits for tasks to be queued)."""
        if session.holds(task_id, fencing_token):
            del session.in_flight[task_id]
            if not session.starved:
                self._wake.set()

    def cancel_assignment(self, task: Task, reason: str) -> None:
        """Tell the worker holding `task` to stop it (if it is connected here);
        its slot is free from now on."""
        if task.concurrency is not None:
            self.wake()  # its key has room again
        session = self._sessions.get(task.worker_id or "")
        if session is None or not session.holds(task.id, task.fencing_token):
            return
        self._free(session, task.id, task.fencing_token)
        session.outbound.put_nowait(Cancel(task.id, task.fencing_token, reason))

    def _revoke(self, session: WorkerSession) -> None:
        """The worker's credential stopped working: its stream ends, and its
        tasks go back to the queue as it disconnects."""
        session.draining = True
        session.outbound.put_nowait(Revoked())

    def changed_elsewhere(self, task_ids: Collection[str]) -> None:
        """Another replica changed these tasks (NOTIFY; "*": maybe any)."""
        held = {t for session in self._sessions.values() for t in session.in_flight}
        changed = held if "*" in task_ids else held.intersection(task_ids)
        if changed:
            self._changed |= changed
            self._changed_wake.set()

    async def run_rechecks(self) -> None:
        """Recheck what NOTIFY named at once, and everything every second."""
        loop = asyncio.get_running_loop()
        everything_at = loop.time() + POLL_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed_wake.wait(), max(0.0, everything_at - loop.time())
                )
            self._changed_wake.clear()
            changed: set[str] | None
            changed, self._changed = self._changed, set()
            # The pass over everything comes every second, however often
            # NOTIFY wakes the loop in between.
            if loop.time() >= everything_at:
                changed, everything_at = None, loop.time() + POLL_SECONDS
            with survived("recheck of held tasks"):
                await self.recheck(changed)

    async def recheck(self, task_ids: Collection[str] | None = None) -> None:
        """Tell workers to stop attempts that are no longer theirs: cancelled,
        timed out or re-queued, by this replica or any other. NOTIFY names
        the tasks that changed elsewhere; a pass over all every second
        catches what a lost NOTIFY would miss."""
        held = {
            task_id: (session, fencing)
            for session in self._sessions.values()
            for task_id, fencing in session.in_flight.items()
            if task_ids is None or task_id in task_ids
        }
        if not held:
            return
        async with self._journal.database.read() as conn:
            current = await task_store.attempts(conn, list(held))
        for task_id, (session, fencing) in held.items():
            row = current.get(task_id)
            if (
                row is not None
                and row.status is TaskStatus.RUNNING
                and row.worker_id == session.id
                and row.fencing_token == fencing
            ):
                continue
            if not session.holds(task_id, fencing):
                continue  # its report was applied meanwhile
            self._free(session, task_id, fencing)
            reason = (row.error if row else "") or "the attempt is no longer current"
            session.outbound.put_nowait(Cancel(task_id, fencing, reason))

    def drain(self, reason: str) -> None:
        """Stop handing out work and ask every worker to finish up."""
        self._draining = True
        for session in self._sessions.values():
            session.draining = True
            session.outbound.put_nowait(Drain(reason))
