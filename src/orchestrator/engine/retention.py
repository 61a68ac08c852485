"""Retention: finished tasks and workflow runs older than the configured age
(ORCHESTRATOR_RETENTION_DAYS) are deleted with their events, and so are the
records of schedule fires for times that old, so the tables do not grow
without bound.

A sweep deletes batch after batch, each in its own short transaction, and
yields to the event loop between them: on SQLite a transaction holds the
only writer (and runs on the loop's thread), so one long delete would hold
up dispatch. On PostgreSQL an advisory lock lets one replica at a time
delete; the others find it taken and leave the round to it.

Deleting appends no event and tells no follower: the record of a finished
task or run is gone, not changed. Whoever asks for it afterwards is answered
NOT_FOUND, as for DeleteTask; a follower still replaying its log when it
goes ends the same way (see TaskEngine.follow).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.engine.background import survived
from orchestrator.store import Database
from orchestrator.store import retention as retention_store
from orchestrator.store.locks import RETENTION_LOCK, try_lock
from orchestrator.store.types import utcnow

log = logging.getLogger(__name__)

# Rows per transaction. On SQLite a batch runs on the event loop's thread and
# stalls everything else for its length: 100 tasks with 5 events each took
# 3-5 ms on the 2-core test machine, 500 took 15-30 ms (as long as a whole
# dispatch round should take). A run brings its nodes, tasks and events
# along, hence fewer runs.
TASK_BATCH = 100
RUN_BATCH = 20
FIRE_BATCH = 500
# A sweep at least every minute, and at least twice per retention age, so
# that a row outlives its age by at most half of it (a short age is how the
# end-to-end test sees deletion happen); never more often than every second.
MAX_PERIOD_SECONDS = 60.0
MIN_PERIOD_SECONDS = 1.0
# The first sweep comes soon after start-up: a replica that restarts often
# still gets to delete.
FIRST_SWEEP_SECONDS = 5.0

DeleteBatch = Callable[[AsyncConnection, datetime, int], Awaitable[int]]


@dataclass(frozen=True)
class Swept:
    tasks: int
    runs: int
    fires: int = 0


class Retention:
    def __init__(
        self,
        database: Database,
        days: float,
        *,
        task_batch: int = TASK_BATCH,
        run_batch: int = RUN_BATCH,
    ) -> None:
        if days <= 0:
            raise ValueError("retention needs an age; 0 days keeps everything: run no sweeps")
        self._database = database
        self._age = timedelta(days=days)
        self._task_batch = task_batch
        self._run_batch = run_batch
        self.period = max(
            MIN_PERIOD_SECONDS, min(MAX_PERIOD_SECONDS, self._age.total_seconds() / 2)
        )

    async def run(self) -> None:
        """Sweep now and then, for ever (until cancelled)."""
        await asyncio.sleep(min(self.period, FIRST_SWEEP_SECONDS))
        while True:
            with survived("retention sweep"):
                await self.sweep()
            await asyncio.sleep(self.period)

    async def sweep(self) -> Swept:
        """Delete everything that finished longer ago than the age."""
        finished_before = utcnow() - self._age
        swept = Swept(
            runs=await self._drain(retention_store.delete_runs, finished_before, self._run_batch),
            tasks=await self._drain(
                retention_store.delete_tasks, finished_before, self._task_batch
            ),
            fires=await self._drain(retention_store.delete_fires, finished_before, FIRE_BATCH),
        )
        if swept.tasks or swept.runs:
            log.info(
                "deleted finished tasks and workflow runs past retention",
                extra={"tasks": swept.tasks, "runs": swept.runs},
            )
        return swept

    async def _drain(self, delete_batch: DeleteBatch, finished_before: datetime, limit: int) -> int:
        """Batches until one comes back short; how many rows in all."""
        total = 0
        while True:
            async with self._database.write() as conn:
                if not await try_lock(conn, RETENTION_LOCK):
                    return total  # another replica is sweeping
                deleted = await delete_batch(conn, finished_before, limit)
            total += deleted
            if deleted < limit:
                return total
            # Let dispatch and everything else waiting run between batches.
            await asyncio.sleep(0)
