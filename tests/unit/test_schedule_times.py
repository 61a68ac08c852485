"""Which of a schedule's times fire in a round (engine/schedule_times.py),
with fixed clocks: the catch-up window after an outage, jitter, the end of
a schedule, and long outages costing little."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.engine.schedule_times import (
    MAX_FIRES_PER_ROUND,
    due_at,
    jitter,
    plan_round,
    upcoming,
)
from orchestrator.engine.schedules import next_time
from orchestrator.model import NewTask, Schedule, ScheduleSpec

CREATED = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def schedule(*, next_fire_at: datetime | None, paused: bool = False, **spec: object) -> Schedule:
    fields: dict[str, object] = {
        "name": "s",
        "cron": "",
        "interval_seconds": 60,
        "time_zone": "",
        "task": NewTask("t", "echo", {}, start=True),
        "workflow_id": None,
        "input": {},
        **spec,
    }
    return Schedule(
        id="schedule-1",
        owner_id="owner",
        spec=ScheduleSpec(**fields),  # type: ignore[arg-type]
        paused=paused,
        note="",
        created_at=CREATED,
        updated_at=CREATED,
        next_fire_at=next_fire_at,
    )


def test_a_time_not_come_yet_does_nothing() -> None:
    planned = plan_round(schedule(next_fire_at=CREATED + MINUTE), CREATED + MINUTE / 2)
    assert planned.fire == [] and planned.next_fire_at == CREATED + MINUTE


def test_on_time_the_time_fires_and_the_next_follows() -> None:
    first = CREATED + MINUTE
    planned = plan_round(schedule(next_fire_at=first), first + timedelta(milliseconds=5))
    assert planned.fire == [first] and planned.next_fire_at == first + MINUTE


def test_after_an_outage_window_zero_fires_only_the_latest_missed_time() -> None:
    now = CREATED + timedelta(days=3, seconds=30)
    planned = plan_round(schedule(next_fire_at=CREATED + MINUTE), now)
    assert planned.fire == [CREATED + timedelta(days=3)]
    assert planned.next_fire_at == CREATED + timedelta(days=3) + MINUTE


def test_a_window_fires_the_missed_times_within_it_in_order() -> None:
    now = CREATED + timedelta(hours=5, seconds=30)
    planned = plan_round(schedule(next_fire_at=CREATED + MINUTE, catchup_window_seconds=300), now)
    assert planned.fire == [CREATED + timedelta(hours=5) - MINUTE * k for k in (4, 3, 2, 1, 0)]
    assert planned.next_fire_at == CREATED + timedelta(hours=5) + MINUTE


def test_a_window_wider_than_the_outage_fires_every_missed_time() -> None:
    now = CREATED + MINUTE * 10
    planned = plan_round(schedule(next_fire_at=CREATED + MINUTE, catchup_window_seconds=3600), now)
    assert planned.fire == [CREATED + MINUTE * k for k in range(1, 11)]


def test_a_huge_backlog_fires_in_rounds_of_a_bounded_size() -> None:
    now = CREATED + timedelta(hours=2)
    s = schedule(next_fire_at=CREATED + timedelta(seconds=1), interval_seconds=1,
                 catchup_window_seconds=86400)  # fmt: skip
    fired: list[datetime] = []
    while (planned := plan_round(s, now)).fire:
        assert len(planned.fire) <= MAX_FIRES_PER_ROUND
        fired += planned.fire
        s = dataclasses.replace(s, next_fire_at=planned.next_fire_at)
    assert fired == [CREATED + timedelta(seconds=k) for k in range(1, 7201)]
    assert s.next_fire_at == now + timedelta(seconds=1)


def test_a_long_outage_of_a_cron_schedule_costs_little() -> None:
    s = schedule(next_fire_at=CREATED + MINUTE, cron="* * * * *", interval_seconds=0,
                 time_zone="Europe/Paris")  # fmt: skip
    now = CREATED + timedelta(days=400, seconds=7)
    started = time.perf_counter()
    planned = plan_round(s, now)
    assert time.perf_counter() - started < 0.5
    assert planned.fire == [CREATED + timedelta(days=400)]
    assert planned.next_fire_at == CREATED + timedelta(days=400) + MINUTE


def test_nothing_after_the_end() -> None:
    end = CREATED + MINUTE * 3
    s = schedule(next_fire_at=CREATED + MINUTE, end_at=end, catchup_window_seconds=3600)
    planned = plan_round(s, CREATED + timedelta(hours=1))
    assert planned.fire == [CREATED + MINUTE, CREATED + MINUTE * 2, end]
    assert planned.next_fire_at is None
    assert upcoming(dataclasses.replace(s, next_fire_at=None), 5) == []


def test_jitter_delays_a_fire_the_same_way_on_every_replica() -> None:
    s = schedule(next_fire_at=CREATED + MINUTE, jitter_seconds=30)
    due = due_at(s, CREATED + MINUTE)
    assert CREATED + MINUTE <= due <= CREATED + MINUTE + timedelta(seconds=30)
    assert plan_round(s, due - timedelta(microseconds=1)).fire == []
    assert plan_round(s, due).fire == [CREATED + MINUTE]


@given(
    st.integers(min_value=1, max_value=3600),
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
def test_jitter_stays_within_its_bound(seconds: int, at: datetime) -> None:
    bound = timedelta(seconds=seconds)
    delay = jitter("schedule-1", at, bound)
    assert timedelta(0) <= delay < bound
    assert delay == jitter("schedule-1", at, bound)


def run_rounds(s: Schedule, start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """Every time fired by rounds from `start` to `end`, one each `step`."""
    fired: list[datetime] = []
    now = start
    while now <= end:
        planned = plan_round(s, now)
        fired += planned.fire
        s = dataclasses.replace(s, next_fire_at=planned.next_fire_at)
        now += step
    return fired


def test_a_loop_a_little_behind_an_every_second_schedule_misses_no_time() -> None:
    """Rounds a little over a second apart (a round's own length added to
    a one-second sleep) fall behind until two times are due at once: with a
    window of 0, both fire, being late by less than ON_TIME."""
    first = CREATED + timedelta(seconds=1)
    s = schedule(next_fire_at=first, interval_seconds=1)
    planned = plan_round(s, first + timedelta(seconds=1.5))
    assert planned.fire == [first, first + timedelta(seconds=1)]
    fired = run_rounds(s, first, first + timedelta(seconds=200), timedelta(seconds=1.07))
    assert fired == [first + timedelta(seconds=k) for k in range(len(fired))]
    assert len(fired) >= 199


def test_cron_jitter_wider_than_the_gap_holds_no_time_back() -> None:
    """An every-minute cron with an hour's jitter: each time's delay is cut
    to the gap to the next, so the times come in order and none is skipped."""
    s = schedule(next_fire_at=CREATED + MINUTE, cron="* * * * *", interval_seconds=0,
                 jitter_seconds=3600)  # fmt: skip
    times = [CREATED + MINUTE * k for k in range(1, 182)]
    dues = [due_at(s, t) for t in times]
    assert all(t <= d < t + MINUTE for t, d in zip(times, dues, strict=True))
    assert dues == sorted(dues) and len(set(dues)) == len(dues)
    end = CREATED + timedelta(hours=3)
    fired = run_rounds(s, CREATED, end, timedelta(seconds=1))
    assert fired == [t for t, d in zip(times, dues, strict=True) if d <= end]
    assert len(fired) >= 179


def test_jitter_never_moves_the_last_fire_past_the_end() -> None:
    end = CREATED + MINUTE * 3 + timedelta(seconds=5)
    s = schedule(next_fire_at=CREATED + MINUTE, end_at=end, jitter_seconds=50)
    last = CREATED + MINUTE * 3
    assert last <= due_at(s, last) < end
    fired = run_rounds(s, CREATED, CREATED + MINUTE * 5, timedelta(seconds=1))
    assert fired == [CREATED + MINUTE * k for k in (1, 2, 3)]


def test_upcoming_times_none_while_paused() -> None:
    s = schedule(next_fire_at=CREATED + MINUTE)
    assert upcoming(s, 3) == [CREATED + MINUTE * k for k in (1, 2, 3)]
    assert upcoming(dataclasses.replace(s, paused=True), 3) == []


def test_an_update_keeps_a_due_time_still_inside_its_jitter() -> None:
    """A time due at 12:01 but jittered to 12:01:40: an update at 12:01:20
    that keeps the time in its calendar does not drop it."""
    time = CREATED + MINUTE
    now = time + timedelta(seconds=20)
    same = schedule(next_fire_at=time, jitter_seconds=50)
    assert next_time(same, time, now) == time
    hourly = schedule(next_fire_at=time, interval_seconds=3600)
    assert next_time(hourly, time, now) == CREATED + timedelta(hours=1)
    assert next_time(same, time + MINUTE, now) == time + MINUTE  # not due: from now on
    assert next_time(same, None, now) == time + MINUTE
