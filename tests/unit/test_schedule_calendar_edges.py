"""`engine.calendar` at the ends of time: the years 1 and 9999, where a
zone's offset pushes a wall time or a UTC time out of what a datetime holds.
A search there still finds every time that exists, and stops cleanly where
time ends (found by the request fuzz: a backfill from the year 1 in New York
fired nothing, and a schedule in its last nine years stopped early)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from orchestrator.engine.calendar import Calendar

NOW = datetime(2026, 11, 30, tzinfo=UTC)
FIRST = datetime(1, 1, 1, tzinfo=UTC)
LAST = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)


def cron(expression: str, zone: str, start_at: datetime | None = None) -> Calendar:
    return Calendar(
        cron=expression,
        interval_seconds=0,
        time_zone=zone,
        start_at=start_at,
        end_at=None,
        anchor=NOW,
    )


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "first_two"),
    [
        # Midnight of 0001-01-01 there is in the year 1 in UTC: it fires.
        ("Etc/GMT+12", [utc(1, 1, 1, 12), utc(2, 1, 1, 12)]),
        # Midnight of 0001-01-01 there is in the year 0 in UTC: it cannot.
        ("Etc/GMT-14", [utc(1, 12, 31, 10), utc(2, 12, 31, 10)]),
    ],
)
def test_from_the_year_1_every_time_that_exists_fires(zone: str, first_two: list[datetime]) -> None:
    assert cron("@yearly", zone).upcoming(FIRST, 2) == first_two


def test_from_the_year_1_a_daily_search_finds_its_limit() -> None:
    # What a backfill of all the past asks: more than it may fire, not nothing.
    found = cron("@daily", "America/New_York").between(FIRST, NOW, 1001)

    assert len(found) == 1001
    assert found[0].date() == FIRST.date()


@pytest.mark.parametrize("zone", ["Etc/GMT+12", "UTC", "Etc/GMT-14"])
def test_the_last_years_fire_to_the_end(zone: str) -> None:
    found = cron("@yearly", zone).between(utc(9989, 6, 1), LAST, 100)

    assert [t.astimezone(ZoneInfo(zone)).year for t in found] == list(range(9990, 10000))


def test_the_last_minutes_fire_and_then_time_ends() -> None:
    # 23:58 UTC on the last day: 11:58 local at UTC-12, past the end at UTC+14.
    start = utc(9999, 12, 31, 23, 58)

    assert cron("* * * * *", "Etc/GMT+12", start).upcoming(NOW, 5) == [
        start,
        utc(9999, 12, 31, 23, 59),
    ]
    assert cron("* * * * *", "Etc/GMT-14", start).upcoming(NOW, 5) == []
    assert cron("* * * * *", "Etc/GMT-14").upcoming(utc(9999, 12, 31, 9, 58), 5) == [
        utc(9999, 12, 31, 9, 59)
    ]
