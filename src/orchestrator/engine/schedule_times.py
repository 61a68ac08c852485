"""Which of a schedule's times fire now: jitter, and the catch-up window.

Pure functions of the schedule, its calendar and the clock, so every replica
that looks at a schedule decides the same thing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from orchestrator.engine.calendar import Calendar
from orchestrator.model import Schedule

# Fires one transaction starts for one schedule (a long outage with a wide
# catch-up window): the rest follow in the next rounds.
MAX_FIRES_PER_ROUND = 1000
# Enough for the densest stretch a backwards search can meet (a cron
# schedule firing every minute of a whole day is 1,440).
_SEARCH_LIMIT = 100_000
_MICROSECOND = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def calendar_of(schedule: Schedule) -> Calendar:
    """Interval schedules count their intervals from the schedule's creation."""
    spec = schedule.spec
    return Calendar(
        cron=spec.cron,
        interval_seconds=spec.interval_seconds,
        time_zone=spec.time_zone,
        start_at=spec.start_at,
        end_at=spec.end_at,
        anchor=schedule.created_at,
    )


def jitter(schedule_id: str, scheduled_at: datetime, jitter_seconds: int) -> timedelta:
    """How late the fire for `scheduled_at` comes, in [0, jitter_seconds]:
    random-looking but derived from the schedule and the time, so every
    replica agrees on it without storing it."""
    if jitter_seconds <= 0:
        return timedelta(0)
    micros = (scheduled_at - _EPOCH) // _MICROSECOND
    digest = hashlib.sha256(f"{schedule_id}/{micros}".encode()).digest()
    return timedelta(microseconds=int.from_bytes(digest[:8]) % (jitter_seconds * 1_000_000 + 1))


def due_at(schedule_id: str, scheduled_at: datetime, jitter_seconds: int) -> datetime:
    return scheduled_at + jitter(schedule_id, scheduled_at, jitter_seconds)


@dataclass(frozen=True)
class Round:
    """What a round does with a schedule's due times."""

    fire: list[datetime]  # in order
    next_fire_at: datetime | None  # the next time not dealt with (may be due already)


def plan_round(schedule: Schedule, now: datetime) -> Round:
    """The times from `next_fire_at` on that are due (their jitter included)
    by `now`: those within the catch-up window of now fire, or, if none is,
    the latest due one; the others are skipped."""
    first = schedule.next_fire_at
    spec = schedule.spec
    if first is None or due_at(schedule.id, first, spec.jitter_seconds) > now:
        return Round([], first)
    calendar = calendar_of(schedule)
    window_start = now - timedelta(seconds=spec.catchup_window_seconds)
    # Before this, every time is due (whatever its jitter) and outside the
    # window: only the latest of them can matter.
    horizon = window_start - timedelta(seconds=spec.jitter_seconds)
    if first >= horizon:
        older, times = None, [first, *calendar.between(first, now, MAX_FIRES_PER_ROUND)]
    else:
        older = latest_before(calendar, first, horizon)
        times = calendar.between(horizon - _MICROSECOND, now, MAX_FIRES_PER_ROUND)
    due: list[datetime] = []
    next_fire_at: datetime | None = None
    for time in times:
        if due_at(schedule.id, time, spec.jitter_seconds) > now:
            next_fire_at = time
            break
        due.append(time)
    else:
        next_fire_at = calendar.next_after(times[-1] if times else horizon - _MICROSECOND)
    in_window = [time for time in due if time >= window_start]
    latest = due[-1:] or ([older] if older else [])
    return Round(in_window or latest, next_fire_at)


def latest_before(calendar: Calendar, first: datetime, until: datetime) -> datetime:
    """The last time in [first, until), `first` being one: searched
    backwards from `until` in growing steps, so a long outage costs a few
    short searches instead of a walk through every time it missed."""
    span = timedelta(minutes=1)
    last = until - _MICROSECOND
    while True:
        start = until - span
        if start <= first:
            return ([first, *calendar.between(first, last, _SEARCH_LIMIT)])[-1]
        found = calendar.between(start, last, _SEARCH_LIMIT)
        if found:
            return found[-1]
        span *= 4


def upcoming(schedule: Schedule, count: int) -> list[datetime]:
    """The next `count` scheduled times; none while paused."""
    first = schedule.next_fire_at
    if schedule.paused or first is None:
        return []
    return [first, *calendar_of(schedule).upcoming(first, count - 1)]
