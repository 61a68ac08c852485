"""When a schedule fires: an interval, or a cron expression in a time zone.

Interval: the fire times are `anchor + k * interval_seconds` for k >= 1,
whatever the time zone.

Cron: five fields, `minute hour day-of-month month day-of-week`, each `*`,
a value, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (a to the field's
end), or a comma list of these. Months take JAN-DEC, days of the week
SUN-SAT (any case); day-of-week 0 and 7 are both Sunday. When day-of-month
and day-of-week are both restricted (neither is exactly `*`; `*/2` counts as
restricted, as in Go's robfig/cron) a day matches if either does, as in
Vixie cron; otherwise it must match both. Shorthands: @yearly (@annually),
@monthly, @weekly, @daily (@midnight), @hourly.

Times are matched on the schedule's local wall clock. A wall time that does
not exist (the hour skipped when clocks go forward) does not fire that day;
a wall time that happens twice (clocks go back) fires once, at its first
occurrence. So "0 * * * *" fires at the first 02:00 of a night that repeats
02:00-03:00, not at the second.

No fire comes before `start_at` or after `end_at`. All times in and out are
aware datetimes in UTC; an empty time zone means UTC.
"""

from __future__ import annotations

import calendar as gregorian
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import islice, takewhile
from zoneinfo import ZoneInfo, available_timezones

MAX_INTERVAL_SECONDS = 366 * 24 * 3600
MAX_CRON = 256  # the column's width

# February 29 comes back after 8 years across a century that is not a leap
# year (2096, then 2104), the longest gap a schedule that can fire has; a
# search that finds nothing for longer than this never will.
SEARCH_HORIZON = timedelta(days=9 * 366)

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

_SHORTHANDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    # The first name stands for this number (JAN is 1, SUN is 0).
    names_from: int = 0
    # Highest value that may be written, above what `*` covers (7 for Sunday).
    written_high: int | None = None

    @property
    def highest_written(self) -> int:
        return self.high if self.written_high is None else self.written_high


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES, 1),
    # 7 is accepted as Sunday and folded onto 0 once parsed.
    _Field("day-of-week", 0, 6, _DAY_NAMES, 0, written_high=7),
)


class CronError(ValueError):
    """A cron expression that cannot be parsed; the message names the field."""


@dataclass(frozen=True)
class CronSpec:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday
    day_of_month_any: bool
    day_of_week_any: bool

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days_of_month
        in_week = day.isoweekday() % 7 in self.days_of_week
        if self.day_of_month_any or self.day_of_week_any:
            return in_month and in_week
        return in_month or in_week

    def never_fires(self) -> str | None:
        """Why no day can ever match, or None. Only day-of-month can rule out
        every day: each weekday comes round in every month."""
        if not self.day_of_week_any:
            return None
        if any(day <= _longest_month(month) for month in self.months for day in self.days_of_month):
            return None
        months = ", ".join(_MONTH_NAMES[month - 1] for month in sorted(self.months))
        days = ", ".join(str(day) for day in sorted(self.days_of_month))
        return f"day-of-month {days} never occurs in {months}: the schedule would never fire"


def _longest_month(month: int) -> int:
    return gregorian.monthrange(2000, month)[1]  # 2000 is a leap year


@lru_cache(maxsize=256)
def parse_cron(expression: str) -> CronSpec:
    """The parsed expression; raises CronError naming the field at fault."""
    text = expression.strip()
    if text.startswith("@"):
        try:
            text = _SHORTHANDS[text.lower()]
        except KeyError:
            known = ", ".join(_SHORTHANDS)
            raise CronError(f"unknown shorthand {text!r}; known: {known}") from None
    parts = text.split()
    if len(parts) != len(_FIELDS):
        raise CronError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
        )
    minutes, hours, doms, months, dows = (
        _parse_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)
    )
    return CronSpec(
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days_of_month=frozenset(doms),
        months=frozenset(months),
        days_of_week=frozenset(day % 7 for day in dows),
        day_of_month_any=parts[2] == "*",
        day_of_week_any=parts[4] == "*",
    )


def _parse_field(text: str, spec: _Field) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{spec.name} field {text!r}: empty item in list")
        values.update(_parse_item(item, spec))
    return values


def _parse_item(item: str, spec: _Field) -> range:
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not _is_number(step_text) or int(step_text) == 0:
            raise CronError(f"{spec.name} field {item!r}: step {step_text!r} is not a number >= 1")
        step = int(step_text)
    if base == "*":
        return range(spec.low, spec.high + 1, step)
    first_text, dash, last_text = base.partition("-")
    first = _parse_value(first_text, item, spec)
    if dash:
        last = _parse_value(last_text, item, spec)
    else:
        last = spec.high if slash else first
    if first > last:
        raise CronError(f"{spec.name} field {item!r}: range runs backwards")
    return range(first, last + 1, step)


def _parse_value(text: str, item: str, spec: _Field) -> int:
    if text.upper() in spec.names:
        return spec.names.index(text.upper()) + spec.names_from
    if not _is_number(text):
        raise CronError(f"{spec.name} field {item!r}: {text!r} is not a {spec.name} value")
    value = int(text)
    if not spec.low <= value <= spec.highest_written:
        raise CronError(
            f"{spec.name} field {item!r}: {value} is outside {spec.low}-{spec.highest_written}"
        )
    return value


def _is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '²', which int() refuses."""
    return text.isascii() and text.isdigit()


def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name or "UTC")


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    """The IANA names: not the other files a zoneinfo directory holds
    (`localtime`, `posixrules`, `Factory`), which name no place's time."""
    return frozenset(available_timezones() - {"Factory", "localtime", "posixrules"})


def calendar_problems(
    cron: str,
    interval_seconds: int,
    time_zone: str,
    start_at: datetime | None,
    end_at: datetime | None,
) -> list[tuple[str, str]]:
    """(field, description) for each thing wrong with a schedule's timing;
    empty when a Calendar can be built from it."""
    problems: list[tuple[str, str]] = []
    if cron and interval_seconds:
        problems.append(("interval_seconds", "give either cron or interval_seconds, not both"))
    elif not cron and not interval_seconds:
        problems.append(("cron", "give either cron or interval_seconds"))
    elif len(cron) > MAX_CRON:
        problems.append(("cron", f"at most {MAX_CRON} characters"))
    elif cron:
        try:
            never = parse_cron(cron).never_fires()
        except CronError as error:
            problems.append(("cron", str(error)))
        else:
            if never:
                problems.append(("cron", never))
    elif not 1 <= interval_seconds <= MAX_INTERVAL_SECONDS:
        problems.append(
            (
                "interval_seconds",
                f"must be between 1 and {MAX_INTERVAL_SECONDS} (366 days), got {interval_seconds}",
            )
        )
    if time_zone and time_zone not in _zone_names():
        problems.append(("time_zone", f"unknown time zone {time_zone!r}; use an IANA name"))
    if start_at is not None and end_at is not None and end_at <= start_at:
        problems.append(("end_at", "must be after start_at"))
    return problems


@dataclass(frozen=True)
class Calendar:
    cron: str  # "" for an interval schedule
    interval_seconds: int  # 0 for a cron schedule
    time_zone: str
    start_at: datetime | None
    end_at: datetime | None
    anchor: datetime  # when the schedule was created
    _spec: CronSpec | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Fails here, not at the first fire, if the spec was never checked.
        object.__setattr__(self, "_spec", parse_cron(self.cron) if self.cron else None)

    def next_after(self, after: datetime) -> datetime | None:
        """The first fire time strictly after `after`; None if there is none
        (past end_at, or a cron that finds no match within SEARCH_HORIZON)."""
        return next(self._fires(after), None)

    def between(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """Fire times t with after < t <= until, in order, at most `limit`."""
        return list(islice(takewhile(lambda t: t <= until, self._fires(after)), max(limit, 0)))

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` fire times after `after` (fewer if they run out)."""
        return list(islice(self._fires(after), max(count, 0)))

    def _fires(self, after: datetime) -> Iterator[datetime]:
        if self.start_at is not None and after < self.start_at:
            # Fire times are whole microseconds: strictly after this is at or after start_at.
            after = self.start_at - timedelta(microseconds=1)
        fires = self._interval_fires(after) if self._spec is None else self._cron_fires(after)
        for fire in fires:
            if self.end_at is not None and fire > self.end_at:
                return
            yield fire

    def _interval_fires(self, after: datetime) -> Iterator[datetime]:
        interval = timedelta(seconds=self.interval_seconds)
        k = max(1, (after - self.anchor) // interval + 1)
        try:
            while True:
                yield self.anchor + k * interval
                k += 1
        except OverflowError:
            return

    def _cron_fires(self, after: datetime) -> Iterator[datetime]:
        spec = self._spec
        assert spec is not None
        zone = _zone(self.time_zone)
        # Wall times map to UTC in order (each to its first occurrence), so
        # none before the wall time of `after` can come after it.
        try:
            lowest_wall = after.astimezone(zone).replace(tzinfo=None)
        except OverflowError:
            if after.year > 1:
                return  # `after` is the year 9999's last hours here: nothing later
            lowest_wall = datetime.min  # the year 0 here: every wall time is later
        day = lowest_wall.date()
        give_up = _days_on(day)
        try:
            while day <= give_up:
                if spec.matches_day(day):
                    for wall in _walls(spec, day, lowest_wall):
                        fire = _to_utc(wall, zone)
                        if fire is not None and fire > after:
                            yield fire
                            give_up = _days_on(day)
                day = _next_candidate_day(spec, day)
        except OverflowError:  # the search ran past the year 9999
            return


def _days_on(day: date) -> date:
    """The last day a search from `day` looks at: SEARCH_HORIZON on, or
    the last day there is."""
    return day + SEARCH_HORIZON if day < date.max - SEARCH_HORIZON else date.max


def _walls(spec: CronSpec, day: date, lowest: datetime) -> Iterator[datetime]:
    """The day's matching wall times, from `lowest` on."""
    for hour in spec.hours:
        for minute in spec.minutes:
            wall = datetime.combine(day, time(hour, minute))
            if wall >= lowest:
                yield wall


def _next_candidate_day(spec: CronSpec, day: date) -> date:
    if day.month in spec.months:
        return day + timedelta(days=1)
    # Skip the rest of a month that cannot match.
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def _to_utc(wall: datetime, zone: ZoneInfo) -> datetime | None:
    """The UTC time of a wall time (its first occurrence if it happens
    twice), or None if the clocks skip it or it falls outside the years
    1-9999 in UTC."""
    local = wall.replace(tzinfo=zone)  # fold=0: the first occurrence
    try:
        fire = local.astimezone(UTC)
    except OverflowError:
        return None
    if fire.astimezone(zone).replace(tzinfo=None) != wall:
        return None
    return fire
