"""`engine.calendar`: when a schedule fires, on fixed clocks.

Cron fields and their errors, the day-of-month/day-of-week rule, leap days,
specs that can never fire, interval anchors and bounds, and wall-clock time
across the DST changes of Amsterdam and New York (and the half-hour zones)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from orchestrator.engine.calendar import (
    MAX_INTERVAL_SECONDS,
    Calendar,
    CronError,
    calendar_problems,
    parse_cron,
)

ANCHOR = datetime(2025, 1, 1, 0, 0, 7, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def cron(expression: str, zone: str = "UTC", **bounds: datetime) -> Calendar:
    return Calendar(
        cron=expression,
        interval_seconds=0,
        time_zone=zone,
        start_at=bounds.get("start_at"),
        end_at=bounds.get("end_at"),
        anchor=ANCHOR,
    )


def every(seconds: int, **bounds: datetime) -> Calendar:
    return Calendar(
        cron="",
        interval_seconds=seconds,
        time_zone="America/New_York",
        start_at=bounds.get("start_at"),
        end_at=bounds.get("end_at"),
        anchor=ANCHOR,
    )


# -- parsing -------------------------------------------------------------------


def test_steps_ranges_and_lists() -> None:
    spec = parse_cron("*/15 1,5-7,22 10-20/5 */4 1-7/3")
    assert spec.minutes == (0, 15, 30, 45)
    assert spec.hours == (1, 5, 6, 7, 22)
    assert spec.days_of_month == {10, 15, 20}
    assert spec.months == {1, 5, 9}
    assert spec.days_of_week == {1, 4, 0}  # 7 is Sunday
    assert parse_cron("5/20 * * * *").minutes == (5, 25, 45)
    assert parse_cron("* * * * 5-7").days_of_week == {5, 6, 0}
    assert parse_cron("* * * * */2").days_of_week == {0, 2, 4, 6}


def test_names_in_any_case() -> None:
    assert parse_cron("0 9 * jan-Mar mon-FRI") == parse_cron("0 9 * 1-3 1-5")
    assert parse_cron("0 9 * DEC,feb sun,Sat") == parse_cron("0 9 * 12,2 0,6")


@pytest.mark.parametrize(
    ("shorthand", "expansion"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_shorthands(shorthand: str, expansion: str) -> None:
    assert parse_cron(shorthand) == parse_cron(expansion)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("60 * * * *", "minute field '60': 60 is outside 0-59"),
        ("* 24 * * *", "hour field '24': 24 is outside 0-23"),
        ("* * 0 * *", "day-of-month field '0': 0 is outside 1-31"),
        ("* * 32 * *", "day-of-month field '32': 32 is outside 1-31"),
        ("* * * 13 *", "month field '13': 13 is outside 1-12"),
        ("* * * * 8", "day-of-week field '8': 8 is outside 0-7"),
        ("* * * * MON-XYZ", "day-of-week field 'MON-XYZ': 'XYZ' is not a day-of-week value"),
        ("JAN * * * *", "minute field 'JAN': 'JAN' is not a minute value"),
        ("* * * MON *", "month field 'MON': 'MON' is not a month value"),
        ("*/0 * * * *", "minute field '*/0': step '0' is not a number >= 1"),
        ("* */x * * *", "hour field '*/x': step 'x' is not a number >= 1"),
        ("* 5-1 * * *", "hour field '5-1': range runs backwards"),
        ("* * * NOV-FEB *", "month field 'NOV-FEB': range runs backwards"),
        ("1,,2 * * * *", "minute field '1,,2': empty item in list"),
        ("-5 * * * *", "minute field '-5': '' is not a minute value"),
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("* * * * * *", "got 6"),
        ("@reboot", "unknown shorthand '@reboot'"),
        # Digits str.isdigit() takes but int() does not.
        ("\u00b2 * * * *", "minute field '\u00b2': '\u00b2' is not a minute value"),
        ("*/\u00b3 * * * *", "minute field '*/\u00b3': step '\u00b3' is not a number >= 1"),
        ("* \u0661 * * *", "hour field '\u0661': '\u0661' is not a hour value"),
    ],
)
def test_errors_name_the_field_and_value(expression: str, message: str) -> None:
    with pytest.raises(CronError) as raised:
        parse_cron(expression)
    assert message in str(raised.value)
    assert calendar_problems(expression, 0, "UTC", None, None) == [("cron", str(raised.value))]
    with pytest.raises(ValueError):
        cron(expression)


# -- which days ----------------------------------------------------------------


def days_fired(expression: str) -> set[datetime]:
    return set(cron(expression).between(utc(2025, 1, 1), utc(2026, 1, 1), 1000))


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    year = [utc(2025, 1, 1) + timedelta(days=n) for n in range(1, 366)]
    thirteenths = {d for d in year if d.day == 13}
    fridays = {d for d in year if d.isoweekday() == 5}
    assert days_fired("0 0 13 * *") == thirteenths
    assert days_fired("0 0 * * FRI") == fridays
    assert days_fired("0 0 13 * FRI") == thirteenths | fridays
    # A stepped field is restricted too.
    odd_days = {d for d in year if d.day % 2 == 1}
    mondays = {d for d in year if d.isoweekday() == 1}
    assert days_fired("0 0 */2 * MON") == odd_days | mondays
    assert days_fired("0 0 * 3 *") == {d for d in year if d.month == 3}


def test_leap_day_skips_the_century_that_is_not_a_leap_year() -> None:
    leap_day = cron("0 0 29 2 *")
    assert leap_day.next_after(utc(2025, 1, 1)) == utc(2028, 2, 29)
    assert leap_day.upcoming(utc(2095, 1, 1), 3) == [
        utc(2096, 2, 29),
        utc(2104, 2, 29),
        utc(2108, 2, 29),
    ]


@pytest.mark.parametrize(
    "expression", ["0 0 31 2 *", "0 0 30 2 *", "0 0 30,31 2 *", "0 0 31 4,6,9,11 *"]
)
def test_a_day_that_never_comes_is_refused(expression: str) -> None:
    problems = calendar_problems(expression, 0, "UTC", None, None)
    assert len(problems) == 1
    assert problems[0][0] == "cron"
    assert "never occurs" in problems[0][1]
    assert cron(expression).next_after(utc(2025, 1, 1)) is None


@pytest.mark.parametrize("expression", ["0 0 29 2 *", "0 0 31 1,2 *", "0 0 31 2 MON"])
def test_a_day_that_comes_sometimes_is_accepted(expression: str) -> None:
    assert calendar_problems(expression, 0, "UTC", None, None) == []
    assert cron(expression).next_after(utc(2025, 1, 1)) is not None


def test_feb_31_or_mondays_fires_on_mondays_of_february() -> None:
    assert cron("0 0 31 2 MON").upcoming(utc(2025, 1, 1), 2) == [utc(2025, 2, 3), utc(2025, 2, 10)]


# -- problems ------------------------------------------------------------------


def test_problems() -> None:
    start = utc(2025, 6, 1)
    assert calendar_problems("0 * * * *", 0, "Europe/Amsterdam", start, start + timedelta(1)) == []
    assert calendar_problems("", 60, "", None, None) == []  # an empty zone is UTC
    assert calendar_problems("", MAX_INTERVAL_SECONDS, "UTC", None, None) == []
    assert [f for f, _ in calendar_problems("", 0, "UTC", None, None)] == ["cron"]
    assert [f for f, _ in calendar_problems("@daily", 60, "UTC", None, None)] == [
        "interval_seconds"
    ]
    for bad in (-1, MAX_INTERVAL_SECONDS + 1):
        assert [f for f, _ in calendar_problems("", bad, "UTC", None, None)] == ["interval_seconds"]
    zones = ("Mars/Olympus", "utc", "../etc/passwd", "/etc/localtime", "America", "zone.tab")
    # Files of a zoneinfo directory that ZoneInfo opens but name no place.
    for zone in (*zones, "localtime", "Factory", "posixrules"):
        assert calendar_problems("", 60, zone, None, None) == [
            ("time_zone", f"unknown time zone {zone!r}; use an IANA name")
        ]
    for end in (start, start - timedelta(seconds=1)):
        assert calendar_problems("", 60, "UTC", start, end) == [
            ("end_at", "must be after start_at")
        ]
    # As long as the column holds, and no longer.
    assert calendar_problems("0" + " " * 248 + "* * * *", 0, "UTC", None, None) == []
    assert calendar_problems("0" + " " * 249 + "* * * *", 0, "UTC", None, None) == [
        ("cron", "at most 256 characters")
    ]
    # Every problem at once, each under its field.
    assert [f for f, _ in calendar_problems("61 * * * *", 0, "Nowhere", start, start)] == [
        "cron",
        "time_zone",
        "end_at",
    ]


# -- intervals -----------------------------------------------------------------


def test_interval_counts_from_the_anchor() -> None:
    hourly = every(3600)
    hour = timedelta(hours=1)
    assert hourly.next_after(ANCHOR) == ANCHOR + hour
    assert hourly.next_after(ANCHOR - timedelta(days=10)) == ANCHOR + hour
    assert hourly.next_after(ANCHOR + hour) == ANCHOR + 2 * hour
    assert hourly.next_after(ANCHOR + hour - timedelta(microseconds=1)) == ANCHOR + hour
    assert hourly.next_after(ANCHOR + 1000 * hour + timedelta(minutes=59)) == ANCHOR + 1001 * hour


def test_interval_ignores_the_time_zone_across_dst() -> None:
    # New York changes its clocks on 2025-03-09; a UTC hour is still an hour.
    hourly = every(3600)
    fires = hourly.between(utc(2025, 3, 9, 4), utc(2025, 3, 9, 9), 100)
    assert [f - fires[0] for f in fires] == [timedelta(hours=n) for n in range(5)]


def test_interval_bounds() -> None:
    hour = timedelta(hours=1)
    late_start = every(3600, start_at=ANCHOR + 2.5 * hour, end_at=ANCHOR + 5 * hour)
    assert late_start.next_after(ANCHOR) == ANCHOR + 3 * hour
    assert late_start.upcoming(ANCHOR, 10) == [
        ANCHOR + 3 * hour,
        ANCHOR + 4 * hour,
        ANCHOR + 5 * hour,
    ]
    assert late_start.next_after(ANCHOR + 5 * hour) is None
    on_the_dot = every(3600, start_at=ANCHOR + 3 * hour)
    assert on_the_dot.next_after(ANCHOR) == ANCHOR + 3 * hour


def test_cron_bounds_are_inclusive() -> None:
    noon = cron("0 12 * * *", start_at=utc(2025, 6, 2, 12), end_at=utc(2025, 6, 4, 12))
    assert noon.upcoming(utc(2025, 1, 1), 10) == [
        utc(2025, 6, 2, 12),
        utc(2025, 6, 3, 12),
        utc(2025, 6, 4, 12),
    ]
    assert noon.next_after(utc(2025, 6, 4, 12)) is None


def test_between_is_after_exclusive_until_inclusive_and_limited() -> None:
    minutely = cron("* * * * *")
    start = utc(2025, 6, 1, 12)
    assert minutely.between(start, start + timedelta(minutes=3), 10) == [
        start + timedelta(minutes=n) for n in (1, 2, 3)
    ]
    assert minutely.between(start, start + timedelta(days=1), 2) == [
        start + timedelta(minutes=n) for n in (1, 2)
    ]
    assert minutely.between(start, start + timedelta(days=1), 0) == []
    assert minutely.between(start, start, 10) == []
    hour = timedelta(hours=1)
    assert every(60).between(ANCHOR, ANCHOR + hour, 1000)[-1] == ANCHOR + hour


# -- wall clock and DST --------------------------------------------------------

AMSTERDAM = "Europe/Amsterdam"
NEW_YORK = "America/New_York"


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        # Spring, 2025-03-30 02:00 CET becomes 03:00 CEST: no 02:30 that day.
        ("30 2 * * *", AMSTERDAM, utc(2025, 3, 28), [(28, 1, 30), (29, 1, 30), (31, 0, 30)]),
        # Spring, 2025-03-09 02:00 EST becomes 03:00 EDT.
        ("30 2 * * *", NEW_YORK, utc(2025, 3, 8), [(8, 7, 30), (10, 6, 30), (11, 6, 30)]),
        # Fall, 2025-10-26 02:00-03:00 happens in CEST, then again in CET: once, in CEST.
        ("30 2 * * *", AMSTERDAM, utc(2025, 10, 25), [(25, 0, 30), (26, 0, 30), (27, 1, 30)]),
        # Fall, 2025-11-02 01:00-02:00 happens in EDT, then again in EST: once, in EDT.
        ("30 1 * * *", NEW_YORK, utc(2025, 11, 1), [(1, 5, 30), (2, 5, 30), (3, 6, 30)]),
    ],
)
def test_daily_across_the_changes_skips_missing_and_fires_repeated_once(
    expression: str, zone: str, after: datetime, expected: list[tuple[int, int, int]]
) -> None:
    assert cron(expression, zone).upcoming(after, 3) == [
        after.replace(day=day, hour=hour, minute=minute) for day, hour, minute in expected
    ]


@pytest.mark.parametrize(
    ("zone", "after", "expected_hours"),
    [
        # Spring: every real hour fires, the skipped wall hour has no UTC hour.
        (AMSTERDAM, utc(2025, 3, 29, 21), [22, 23, 0, 1, 2, 3]),
        (NEW_YORK, utc(2025, 3, 9, 3), [4, 5, 6, 7, 8, 9]),
        # Fall: the repeated wall hour fires once, so one UTC hour is missing.
        (AMSTERDAM, utc(2025, 10, 25, 21), [22, 23, 0, 2, 3, 4]),
        (NEW_YORK, utc(2025, 11, 2, 3), [4, 5, 7, 8, 9, 10]),
    ],
)
def test_hourly_around_the_changes(zone: str, after: datetime, expected_hours: list[int]) -> None:
    fires = cron("0 * * * *", zone).upcoming(after, 6)
    assert [f.hour for f in fires] == expected_hours
    assert all(f.minute == 0 and f.tzinfo is UTC for f in fires)
    assert fires[-1] - fires[0] < timedelta(hours=7)


def test_inside_the_repeated_hour_the_next_fire_is_after_it() -> None:
    half_hourly = cron("*/30 * * * *", "America/New_York")
    # 06:15 UTC is 01:15 EST, the second time round; 01:30 EST already fired as EDT.
    assert half_hourly.next_after(utc(2025, 11, 2, 6, 15)) == utc(2025, 11, 2, 7)
    assert half_hourly.between(utc(2025, 11, 2, 4, 45), utc(2025, 11, 2, 7, 30), 10) == [
        utc(2025, 11, 2, 5),
        utc(2025, 11, 2, 5, 30),
        utc(2025, 11, 2, 7),
        utc(2025, 11, 2, 7, 30),
    ]


def test_half_hour_offset_zone() -> None:
    # Asia/Kolkata is UTC+05:30 all year.
    assert cron("0 9 * * *", "Asia/Kolkata").upcoming(utc(2025, 6, 1), 2) == [
        utc(2025, 6, 1, 3, 30),
        utc(2025, 6, 2, 3, 30),
    ]
    assert cron("30 * * * *", "Asia/Kolkata").upcoming(utc(2025, 6, 1, 0, 10), 2) == [
        utc(2025, 6, 1, 1),
        utc(2025, 6, 1, 2),
    ]


def test_a_yearly_fire_across_the_date_line() -> None:
    # Pacific/Kiritimati is UTC+14: its New Year's Eve ends before UTC's begins.
    assert cron("59 23 31 12 *", "Pacific/Kiritimati").upcoming(utc(2025, 1, 1), 2) == [
        utc(2025, 12, 31, 9, 59),
        utc(2026, 12, 31, 9, 59),
    ]


# -- property ------------------------------------------------------------------

DAYS = [(1, 31), (1, 12), (0, 6)]
ZONES = [
    "UTC",
    "Europe/Amsterdam",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # its clocks change by half an hour
]
TRANSITIONS = [
    utc(2025, 3, 30, 1),
    utc(2025, 10, 26, 1),
    utc(2025, 3, 9, 7),
    utc(2025, 11, 2, 6),
    utc(2025, 4, 5, 15),
    utc(2025, 10, 4, 15, 30),
]


def field_text(low: int, high: int, stars: int = 1) -> st.SearchStrategy[tuple[str, set[int]]]:
    """A field's text and the values it stands for; `stars` weighs `*`."""
    value = st.integers(low, high)
    single = value.map(lambda v: (str(v), {v}))
    span = st.tuples(value, value).map(sorted)
    ranged = span.map(lambda ab: (f"{ab[0]}-{ab[1]}", set(range(ab[0], ab[1] + 1))))
    stepped = st.integers(1, 12).map(lambda n: (f"*/{n}", set(range(low, high + 1, n))))
    listed = st.lists(value, min_size=2, max_size=4).map(
        lambda vs: (",".join(map(str, vs)), set(vs))
    )
    star = st.just(("*", set(range(low, high + 1))))
    return st.one_of(*[star] * stars, single, ranged, stepped, listed)


def day_matches(local: datetime, fields: list[tuple[str, set[int]]]) -> bool:
    (_, doms), (_, months), (dow_text, dows) = fields[2], fields[3], fields[4]
    if local.month not in months:
        return False
    in_month = local.day in doms
    in_week = local.isoweekday() % 7 in dows
    if fields[2][0] == "*" or dow_text == "*":
        return in_month and in_week
    return in_month or in_week


def fields_match(local: datetime, fields: list[tuple[str, set[int]]]) -> bool:
    return (
        local.minute in fields[0][1] and local.hour in fields[1][1] and day_matches(local, fields)
    )


@settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    fields=st.tuples(
        field_text(0, 59),
        field_text(0, 23),
        # Days mostly unrestricted, so the days the clocks change often match.
        field_text(1, 31, stars=4),
        field_text(1, 12, stars=4),
        field_text(0, 6, stars=4),
    ).map(list),
    zone=st.sampled_from(ZONES),
    base=st.one_of(
        st.sampled_from(TRANSITIONS),
        st.datetimes(datetime(2000, 1, 1), datetime(2090, 1, 1)).map(
            lambda d: d.replace(tzinfo=UTC)
        ),
    ),
    # Mostly within hours of the base, so the clock changes are often crossed.
    shift=st.one_of(
        st.integers(-3 * 3600 * 10**6, 3 * 3600 * 10**6),
        st.integers(-3 * 24 * 3600 * 10**6, 3 * 24 * 3600 * 10**6),
    ),
    later=st.integers(0, 3 * 24 * 3600),
)
@example(  # 02:30 the night New York springs forward, which random search rarely meets
    fields=[("30", {30}), ("2", {2}), *[("*", set(range(lo, hi + 1))) for lo, hi in DAYS]],
    zone="America/New_York",
    base=utc(2025, 3, 9, 7),
    shift=-3600 * 10**6,
    later=0,
)
def test_fires_are_later_ordered_monotone_matching_and_complete(
    fields: list[tuple[str, set[int]]], zone: str, base: datetime, shift: int, later: int
) -> None:
    expression = " ".join(text for text, _ in fields)
    assume(calendar_problems(expression, 0, zone, None, None) == [])
    calendar = cron(expression, zone)
    after = base + timedelta(microseconds=shift)
    fire = calendar.next_after(after)
    assert fire is not None
    assert fire > after
    fires = calendar.upcoming(after, 5)
    assert fires[0] == fire
    assert fires == sorted(set(fires))
    for each in fires:
        local = each.astimezone(ZoneInfo(zone))
        assert fields_match(local, fields)
        assert local.fold == 0  # the first occurrence of a repeated wall time
    # Monotone: a later start never finds an earlier fire.
    second = calendar.next_after(after + timedelta(seconds=later))
    assert second is not None and second >= fire
    # Nothing skipped: no whole UTC minute before it matches (within a few days).
    if fire - after < timedelta(days=3):
        minute = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        while minute < fire:
            wall = minute.astimezone(ZoneInfo(zone))
            assert wall.fold == 1 or not fields_match(wall, fields), minute
            minute += timedelta(minutes=1)
