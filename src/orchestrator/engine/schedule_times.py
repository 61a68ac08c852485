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
# catch-up window): the rest follow in the next rounds, each short.
MAX_FIRES_PER_ROUND = 100
# A time less late than this is on time, not missed, whatever the catch-up
# window: a round takes time, and a loop a little behind an every-second
# schedule finds two of its times due at once.
ON_TIME = timedelta(seconds=2)
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


def jitter(schedule_id: str, scheduled_at: datetime, bound: timedelta) -> timedelta:
    """How late the fire for `scheduled_at` comes, in [0, bound): random-
    looking but derived from the schedule and the time, so every replica
    agrees on it without storing it."""
    micros = (scheduled_at - _EPOCH) // _MICROSECOND
    digest = hashlib.sha256(f"{schedule_id}/{micros}".encode()).digest()
    return timedelta(microseconds=int.from_bytes(digest[:8]) * (bound // _MICROSECOND) >> 64)


def due_at(schedule: Schedule, time: datetime, following: datetime | None = None) -> datetime:
    """When the fire for `time` comes: its jitter added, bounded by the
    schedule's next time (`following`, looked up if not given) or, for its
    last, by end_at. So fires come in the order of their times, one's delay
    never holds back the next, and none comes after end_at."""
    spec = schedule.spec
    if spec.jitter_seconds <= 0:
        return time
    if following is None:
        following = calendar_of(schedule).next_after(time)
    limit = following if following is not None else spec.end_at
    bound = timedelta(seconds=spec.jitter_seconds)
    if limit is not None:
        bound = min(bound, limit - time)
    return time + jitter(schedule.id, time, bound)


def due_or_none(schedule: Schedule, time: datetime | None) -> datetime | None:
    return None if time is None else due_at(schedule, time)


@dataclass(frozen=True)
class Round:
    """What a round does with a schedule's due times."""

    fire: list[datetime]  # in order
    next_fire_at: datetime | None  # the next time not dealt with (may be due already)
    due_at: datetime | None  # when next_fire_at fires


def plan_round(schedule: Schedule, now: datetime) -> Round:
    """The times from `next_fire_at` on that are due (their jitter included)
    by `now`: those within the catch-up window of now (or less than ON_TIME
    late) fire, or, if none is, the latest due one; the others are skipped.
    At most MAX_FIRES_PER_ROUND; the rest are left due for the next round."""
    first = schedule.next_fire_at
    spec = schedule.spec
    if first is None:
        return Round([], None, None)
    calendar = calendar_of(schedule)
    first_due = due_at(schedule, first)
    if first_due > now:
        return Round([], first, first_due)
    window_start = now - max(timedelta(seconds=spec.catchup_window_seconds), ON_TIME)
    # Before this, every time is due (whatever its jitter) and outside the
    # window: only the latest of them can matter.
    horizon = window_start - timedelta(seconds=spec.jitter_seconds)
    if first >= horizon:
        older, times = None, [first, *calendar.between(first, now, MAX_FIRES_PER_ROUND - 1)]
    else:
        older = latest_before(calendar, first, horizon)
        times = calendar.between(horizon - _MICROSECOND, now, MAX_FIRES_PER_ROUND)
    following = calendar.next_after(times[-1] if times else horizon - _MICROSECOND)
    due: list[datetime] = []
    next_fire_at, next_due = following, due_or_none(schedule, following)
    for time, after in zip(times, [*times[1:], following], strict=False):
        time_due = due_at(schedule, time, after)
        if time_due > now:
            next_fire_at, next_due = time, time_due
            break
        due.append(time)
    in_window = [time for time in due if time >= window_start]
    latest = due[-1:] or ([older] if older else [])
    return Round(in_window or latest, next_fire_at, next_due)


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
