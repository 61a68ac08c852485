"""Charts as SVG, drawn on the server: tasks finished per minute, and a run's
timeline. Times are shown in UTC; a naive datetime is taken to be UTC."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from markupsafe import Markup

from orchestrator.web.graph import clip, printable, state_class, svg_open
from orchestrator.web.templating import duration

MINUTES = 60
BAR_PITCH = 8
BAR_WIDTH = 6
PLOT_HEIGHT = 120
LEFT = 40
TOP = 12
BOTTOM = 24
RIGHT = 24

GANTT_LABEL_WIDTH = 150
GANTT_LABEL_CHARS = 20
GANTT_PLOT_WIDTH = 480
GANTT_ROW = 22
GANTT_BAR = 14
GANTT_AXIS = 24
# Tick spacings tried in turn (seconds) until the axis holds at most six ticks.
TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
DAY = 86400


@dataclass(frozen=True)
class GanttRow:
    label: str
    state: str
    start: datetime | None
    end: datetime | None


def bar_chart(
    points: Sequence[tuple[datetime, int, int]], *, label: str, end: datetime | None = None
) -> Markup:
    """Tasks finished per minute over the hour that ends with `end`'s minute
    (default: the latest point's), 60 bars stacked succeeded under failed.

    `points` are (minute, succeeded, failed); several in one minute add up,
    points outside the hour are ignored and missing minutes count zero. Each
    bar's <title> reads "HH:MM: N finished", with " (F failed)" when some did.
    """
    utc_points = [(_utc(at).replace(second=0, microsecond=0), s, f) for at, s, f in points]
    last = _utc(end) if end is not None else max((at for at, _, _ in utc_points), default=None)
    width = LEFT + MINUTES * BAR_PITCH + RIGHT
    height = TOP + PLOT_HEIGHT + BOTTOM
    base = TOP + PLOT_HEIGHT
    parts = [
        svg_open("chart bars", width, height, label),
        Markup('<path class="axis" d="M{},{} V{} H{}"/>').format(
            LEFT, TOP, base, LEFT + MINUTES * BAR_PITCH
        ),
    ]
    counts: dict[datetime, list[int]] = {}
    if last is not None:
        first = last.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
        minutes = [first + timedelta(minutes=i) for i in range(MINUTES)]
        counts = {minute: [0, 0] for minute in minutes}
        for at, succeeded, failed in utc_points:
            if at in counts:
                counts[at][0] += succeeded
                counts[at][1] += failed
        parts += [
            _minute_tick(i, minute) for i, minute in enumerate(minutes) if minute.minute % 15 == 0
        ]
        parts.append(_text("axis-unit", LEFT - 4, base + 16, "UTC", anchor="end"))
    top = max((sum(pair) for pair in counts.values()), default=0)
    parts.append(_text("axis-label", LEFT - 4, base, "0", anchor="end"))
    if top == 0:
        parts.append(
            _text(
                "chart-empty",
                LEFT + MINUTES * BAR_PITCH // 2,
                TOP + PLOT_HEIGHT // 2,
                "nothing finished in the last hour",
                anchor="middle",
            )
        )
    else:
        parts.append(_text("axis-label", LEFT - 4, TOP + 10, str(top), anchor="end"))
        parts += [
            _bar(i, minute, pair[0], pair[1], top)
            for i, (minute, pair) in enumerate(counts.items())
        ]
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def _bar(index: int, minute: datetime, succeeded: int, failed: int, top: int) -> Markup:
    x = LEFT + index * BAR_PITCH + (BAR_PITCH - BAR_WIDTH) // 2
    base: float = TOP + PLOT_HEIGHT
    title = f"{minute:%H:%M}: {succeeded + failed} finished" + (
        f" ({failed} failed)" if failed else ""
    )
    parts = [
        Markup('<g class="bar" data-minute="{:%H:%M}"><title>{}</title>').format(minute, title),
        # Catches the pointer over the whole column, so an empty minute has a title too.
        Markup(
            '<rect class="bar-hit" x="{}" y="{}" width="{}" height="{}" fill="transparent"/>'
        ).format(x, TOP, BAR_WIDTH, PLOT_HEIGHT),
    ]
    for state, count in (("succeeded", succeeded), ("failed", failed)):
        if count:
            # A single task in a busy hour still shows as a sliver.
            size = max(1.0, count / top * PLOT_HEIGHT)
            base -= size
            parts.append(
                Markup('<rect class="{}" x="{}" y="{}" width="{}" height="{}"/>').format(
                    state_class(state), x, _num(base), BAR_WIDTH, _num(size)
                )
            )
    parts.append(Markup("</g>"))
    return Markup("").join(parts)


def _minute_tick(index: int, minute: datetime) -> Markup:
    x = LEFT + index * BAR_PITCH + BAR_PITCH // 2
    base = TOP + PLOT_HEIGHT
    return Markup('<path class="tick" d="M{},{} v4"/>').format(x, base) + _text(
        "axis-label", x, base + 16, f"{minute:%H:%M}", anchor="middle"
    )


def gantt(rows: Sequence[GanttRow], now: datetime) -> Markup:
    """One bar per row from its start to its end, or to `now` while it has no
    end; a row never started reads "not started" ("skipped" if it was). Bars share one time axis."""
    now = _utc(now)
    spans = [(_utc(r.start), _utc(r.end) if r.end else now) for r in rows if r.start]
    first = min((start for start, _ in spans), default=now)
    last = max([first, *(end for _, end in spans)])
    seconds = max((last - first).total_seconds(), 1.0)
    scale = GANTT_PLOT_WIDTH / seconds
    width = GANTT_LABEL_WIDTH + GANTT_PLOT_WIDTH + RIGHT
    height = GANTT_AXIS + max(len(rows), 1) * GANTT_ROW + 4
    parts = [svg_open("chart gantt", width, height, "run timeline")]
    if spans:
        parts += _time_axis(first, seconds, height)
    if not rows:
        parts.append(_text("chart-empty", GANTT_LABEL_WIDTH, GANTT_AXIS + 15, "no nodes"))
    for index, row in enumerate(rows):
        parts.append(_gantt_row(row, GANTT_AXIS + index * GANTT_ROW, first, now, scale))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def _gantt_row(row: GanttRow, y: int, first: datetime, now: datetime, scale: float) -> Markup:
    parts = [
        Markup('<g class="gantt-row {}" data-label="{}">').format(
            state_class(row.state), printable(row.label)
        ),
        Markup("<title>{}</title>").format(printable(row.label)),
        _text("gantt-label", 4, y + 15, clip(row.label, GANTT_LABEL_CHARS)),
    ]
    if row.start is None:
        idle = "skipped" if row.state.upper() == "SKIPPED" else "not started"
        parts.append(_text("gantt-idle", GANTT_LABEL_WIDTH + 4, y + 15, idle))
    else:
        start = _utc(row.start)
        end = _utc(row.end) if row.end else now
        seconds = max((end - start).total_seconds(), 0.0)
        so_far = "" if row.end else " so far"
        title = f"{row.label}: {row.state.lower()}, {duration(seconds)}{so_far}"
        parts.append(
            Markup(
                '<rect class="gantt-bar {}" x="{}" y="{}" width="{}" height="{}" rx="2">'
                "<title>{}</title></rect>"
            ).format(
                state_class(row.state),
                _num(GANTT_LABEL_WIDTH + (start - first).total_seconds() * scale),
                y + (GANTT_ROW - GANTT_BAR) // 2,
                # A zero-length bar would vanish; a pixel says it ran.
                _num(max(seconds * scale, 1.0)),
                GANTT_BAR,
                printable(title),
            )
        )
    parts.append(Markup("</g>"))
    return Markup("").join(parts)


def _time_axis(first: datetime, seconds: float, height: int) -> list[Markup]:
    step = next((s for s in TICK_STEPS if seconds / s <= 6), math.ceil(seconds / 6 / DAY) * DAY)
    if step < 60:
        pattern = "%H:%M:%S"
    elif step < DAY and seconds < DAY:
        pattern = "%H:%M"
    else:
        pattern = "%m-%d %H:%M"
    start = first.timestamp()
    tick = math.ceil(start / step) * step
    parts: list[Markup] = []
    while tick <= start + seconds:
        x = GANTT_LABEL_WIDTH + (tick - start) / seconds * GANTT_PLOT_WIDTH
        parts.append(
            Markup('<path class="grid" d="M{},{} V{}"/>').format(_num(x), GANTT_AXIS - 4, height)
        )
        label = datetime.fromtimestamp(tick, UTC).strftime(pattern)
        parts.append(_text("axis-label", x, GANTT_AXIS - 8, label, anchor="middle"))
        tick += step
    parts.append(_text("axis-unit", 4, GANTT_AXIS - 8, "UTC"))
    return parts


def _text(css_class: str, x: float, y: float, text: str, anchor: str = "start") -> Markup:
    return Markup('<text class="{}" x="{}" y="{}" text-anchor="{}">{}</text>').format(
        css_class, _num(x), _num(y), anchor, printable(text)
    )


def _num(value: float) -> str:
    """A coordinate with at most two decimals and no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
