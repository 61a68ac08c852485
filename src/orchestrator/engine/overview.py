"""What the dashboard's overview shows: tasks by status, tasks finished per
minute over the last hour, the latest failures, and the queues.

Owner-scoped like the task service: a member sees only its own tasks (not
even how many others have queued), an admin everyone's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from orchestrator.auth.identity import Identity
from orchestrator.model import Task, TaskStatus
from orchestrator.store import Database
from orchestrator.store import overview as overview_store
from orchestrator.store import status as status_store
from orchestrator.store.types import utcnow

MINUTES = 60
MINUTE = timedelta(minutes=1)
# A task's finished_at is taken before its transaction commits: a minute is
# read again until it has been over this long, then kept.
SETTLED = timedelta(seconds=10)
# Callers whose past minutes are kept (one per member, one for admins).
_MOST_OWNERS = 1000


@dataclass(frozen=True)
class QueueRow:
    """One task type's queue, as the caller may see it."""

    type: str
    queued: int
    # Queued but not due yet: a start time or a retry's backoff ahead.
    not_due: int
    # How long the longest-queued task has waited; None when none is queued.
    oldest_waiting_seconds: float | None
    running: int


def _owner(caller: Identity) -> str | None:
    return None if caller.is_admin else caller.user_id


class OverviewReader:
    def __init__(self, database: Database) -> None:
        self._db = database
        # Owner (None: admins) -> settled minute -> (succeeded, failed or
        # cancelled): a chart redrawn every second reads only the minutes
        # still moving, not an hour of finished tasks.
        self._settled: dict[str | None, dict[datetime, tuple[int, int]]] = {}

    async def counts(self, caller: Identity) -> dict[TaskStatus, int]:
        """Tasks by status, every status present (zeros too)."""
        async with self._db.read() as conn:
            return await overview_store.counts(conn, _owner(caller))

    async def finished_per_minute(
        self, caller: Identity, now: datetime
    ) -> list[tuple[datetime, int, int]]:
        """(minute, succeeded, failed or cancelled) for the 60 UTC minutes
        ending with the one `now` is in, oldest first, always 60 of them.

        Whole clock minutes, not minutes counted back from `now`: a minute
        once past never changes, so a chart redrawn every second changes
        only its last bar (the minute still running)."""
        last = now.astimezone(UTC).replace(second=0, microsecond=0)
        first = last - (MINUTES - 1) * MINUTE
        minutes = [first + i * MINUTE for i in range(MINUTES)]
        owner = _owner(caller)
        if owner not in self._settled and len(self._settled) >= _MOST_OWNERS:
            self._settled.clear()
        settled = self._settled.setdefault(owner, {})
        for minute in [m for m in settled if m < first]:
            del settled[minute]
        start = next((m for m in minutes if m not in settled), last)
        async with self._db.read() as conn:
            found = await overview_store.finished_per_minute(conn, owner, start, last + MINUTE)
        for minute in minutes:
            if minute >= start and minute + MINUTE + SETTLED <= now:
                settled[minute] = found.get(minute, (0, 0))
        return [(m, *(settled.get(m) or found.get(m, (0, 0)))) for m in minutes]

    async def recent_failures(self, caller: Identity, limit: int = 10) -> list[Task]:
        """The `limit` tasks that failed last, the latest first."""
        async with self._db.read() as conn:
            return await overview_store.recent_failures(conn, _owner(caller), limit)

    async def queue(self, caller: Identity) -> list[QueueRow]:
        """Each task type with tasks queued or running, by name."""
        now = utcnow()
        owner = _owner(caller)
        async with self._db.read() as conn:
            depths = {q.type: q for q in await status_store.queue_depths(conn, now, owner_id=owner)}
            running = await overview_store.running_by_type(conn, owner)
        rows = []
        for type in sorted(depths.keys() | running.keys()):
            depth = depths.get(type)
            oldest = depth.oldest_queued_at if depth is not None else None
            rows.append(
                QueueRow(
                    type=type,
                    queued=depth.queued if depth is not None else 0,
                    not_due=depth.not_due if depth is not None else 0,
                    oldest_waiting_seconds=max(0.0, (now - oldest).total_seconds())
                    if oldest is not None
                    else None,
                    running=running.get(type, 0),
                )
            )
        return rows
