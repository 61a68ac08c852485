"""orchestrator.web.charts: tasks finished per minute, and a run's timeline,
drawn as SVG on the server and parsed back here as XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.web.charts import (
    GANTT_LABEL_WIDTH,
    GANTT_PLOT_WIDTH,
    GanttRow,
    bar_chart,
    gantt,
)
from orchestrator.web.templating import duration

SVG = "{http://www.w3.org/2000/svg}"
EVIL = "<script>alert(1)</script>"
NOW = datetime(2025, 3, 4, 12, 30, 40, tzinfo=UTC)


def by_class(root: ET.Element, tag: str, css_class: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}{tag}") if css_class in e.get("class", "").split()]


def texts(root: ET.Element, css_class: str) -> list[str]:
    return [e.text or "" for e in by_class(root, "text", css_class)]


def title(element: ET.Element) -> str:
    found = element.find(f"{SVG}title")
    assert found is not None
    return found.text or ""


def minutes_ago(n: int) -> datetime:
    return NOW - timedelta(minutes=n)


def test_one_bar_a_minute_for_the_last_hour() -> None:
    points = [(minutes_ago(0), 3, 0), (minutes_ago(59), 1, 2), (minutes_ago(10), 4, 0)]
    root = ET.fromstring(str(bar_chart(points, label="finished per minute")))
    bars = by_class(root, "g", "bar")
    assert len(bars) == 60
    assert title(bars[0]) == "11:31: 3 finished (2 failed)"
    assert title(bars[-1]) == "12:30: 3 finished"
    assert title(bars[49]) == "12:20: 4 finished"
    assert title(bars[1]) == "11:32: 0 finished"
    assert [b.get("data-minute") for b in bars[:2]] == ["11:31", "11:32"]
    assert texts(root, "axis-label") == ["11:45", "12:00", "12:15", "12:30", "0", "4"]
    assert texts(root, "axis-unit") == ["UTC"]
    assert root.get("aria-label") == "finished per minute"


def test_bars_stack_and_scale_to_the_busiest_minute() -> None:
    points = [(minutes_ago(0), 6, 2), (minutes_ago(1), 2, 0), (minutes_ago(2), 0, 4)]
    root = ET.fromstring(str(bar_chart(points, label="x")))
    bars = by_class(root, "g", "bar")

    def heights(bar: ET.Element) -> dict[str, float]:
        return {
            r.get("class", ""): float(r.get("height", "nan"))
            for r in bar.iter(f"{SVG}rect")
            if r.get("class") != "bar-hit"
        }

    top = heights(bars[-1])
    assert set(top) == {"state-succeeded", "state-failed"}
    assert top["state-succeeded"] == pytest.approx(3 * top["state-failed"])
    assert heights(bars[-2]) == {"state-succeeded": pytest.approx(top["state-failed"])}
    assert heights(bars[-3]) == {"state-failed": pytest.approx(2 * top["state-failed"])}
    assert heights(bars[0]) == {}
    # Failed sits on top of succeeded.
    rects = {r.get("class"): r for r in bars[-1].iter(f"{SVG}rect")}
    failed, succeeded = rects["state-failed"], rects["state-succeeded"]
    assert float(failed.get("y", "nan")) + float(failed.get("height", "nan")) == pytest.approx(
        float(succeeded.get("y", "nan"))
    )


def test_the_hour_ends_where_the_caller_says() -> None:
    # Same minute counted once, an hour ago left out, the window ends at `end`.
    points = [(minutes_ago(5), 1, 0), (minutes_ago(5) + timedelta(seconds=3), 2, 1)]
    points.append((minutes_ago(70), 9, 9))
    root = ET.fromstring(str(bar_chart(points, label="x", end=NOW)))
    bars = by_class(root, "g", "bar")
    assert len(bars) == 60 and bars[-1].get("data-minute") == "12:30"
    assert title(bars[-6]) == "12:25: 4 finished (1 failed)"
    assert "9" not in texts(root, "axis-label")


@pytest.mark.parametrize(
    "points", [[], [(minutes_ago(3), 0, 0)], [(minutes_ago(61), 5, 0)]], ids=str
)
def test_nothing_finished_draws_an_axis_and_says_so(
    points: list[tuple[datetime, int, int]],
) -> None:
    root = ET.fromstring(str(bar_chart(points, label="x", end=NOW)))
    assert by_class(root, "g", "bar") == []
    assert texts(root, "chart-empty") == ["nothing finished in the last hour"]
    assert by_class(root, "path", "axis")
    assert "0" in texts(root, "axis-label")


def test_chart_label_is_escaped() -> None:
    markup = str(bar_chart([], label=EVIL))
    assert "<script" not in markup
    assert ET.fromstring(markup).get("aria-label") == EVIL


def span(root: ET.Element, label: str) -> tuple[float, float] | None:
    [row] = [g for g in by_class(root, "g", "gantt-row") if g.get("data-label") == label]
    bars = by_class(row, "rect", "gantt-bar")
    if not bars:
        return None
    x, width = float(bars[0].get("x", "nan")), float(bars[0].get("width", "nan"))
    return x, x + width


def test_gantt_bars_are_as_long_as_their_nodes_ran() -> None:
    t0 = NOW - timedelta(minutes=10)
    rows = [
        GanttRow("fetch", "SUCCEEDED", t0, t0 + timedelta(minutes=1)),
        GanttRow("parse", "FAILED", t0 + timedelta(minutes=1), t0 + timedelta(minutes=3)),
        GanttRow("store", "RUNNING", t0 + timedelta(minutes=4), None),
        GanttRow("notify", "PENDING", None, None),
    ]
    root = ET.fromstring(str(gantt(rows, NOW)))
    fetch, parse, store = span(root, "fetch"), span(root, "parse"), span(root, "store")
    assert fetch is not None and parse is not None and store is not None
    minute = fetch[1] - fetch[0]
    assert parse[1] - parse[0] == pytest.approx(2 * minute, abs=0.02)
    assert store[1] - store[0] == pytest.approx(6 * minute, abs=0.02)
    # One shared axis: starts line up with the clock, the running bar ends at now.
    assert fetch[0] == pytest.approx(GANTT_LABEL_WIDTH)
    assert parse[0] == pytest.approx(fetch[1], abs=0.02)
    assert store[1] == pytest.approx(GANTT_LABEL_WIDTH + GANTT_PLOT_WIDTH, abs=0.02)
    assert span(root, "notify") is None
    [idle] = texts(root, "gantt-idle")
    assert idle == "not started"
    bar_titles = [title(r) for r in by_class(root, "rect", "gantt-bar")]
    assert bar_titles == [
        "fetch: succeeded, 1 min",
        "parse: failed, 2 min",
        "store: running, 6 min so far",
    ]
    assert [g.get("class") for g in by_class(root, "g", "gantt-row")] == [
        "gantt-row state-succeeded",
        "gantt-row state-failed",
        "gantt-row state-running",
        "gantt-row state-pending",
    ]
    # Ten minutes on the axis: a tick every two, on the even minutes.
    assert texts(root, "axis-label") == ["12:22", "12:24", "12:26", "12:28", "12:30"]
    assert texts(root, "axis-unit") == ["UTC"]


def test_running_rows_end_at_now_even_when_others_ended_later() -> None:
    # A finished row's end is in the future of `now` (clocks differ): the
    # running row still ends at now, not at the axis's far end.
    start = NOW - timedelta(seconds=30)
    rows = [
        GanttRow("a", "RUNNING", start, None),
        GanttRow("b", "SUCCEEDED", start, NOW + timedelta(seconds=30)),
    ]
    root = ET.fromstring(str(gantt(rows, NOW)))
    a, b = span(root, "a"), span(root, "b")
    assert a is not None and b is not None
    assert a[1] - a[0] == pytest.approx((b[1] - b[0]) / 2, abs=0.02)


def test_gantt_with_nothing_started_and_hostile_labels() -> None:
    markup = str(gantt([GanttRow(EVIL, EVIL, None, None)], NOW))
    assert "<script" not in markup
    root = ET.fromstring(markup)
    [row] = by_class(root, "g", "gantt-row")
    assert row.get("data-label") == EVIL
    assert row.get("class") == "gantt-row state-scriptalert1script"
    assert texts(root, "gantt-idle") == ["not started"]
    assert texts(root, "axis-label") == []


def test_a_skipped_row_says_skipped_not_that_it_has_yet_to_start() -> None:
    rows = [GanttRow("apologise", "SKIPPED", None, None), GanttRow("later", "PENDING", None, None)]
    root = ET.fromstring(str(gantt(rows, NOW)))
    assert texts(root, "gantt-idle") == ["skipped", "not started"]


def test_naive_times_are_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    rows = [GanttRow("a", "SUCCEEDED", naive - timedelta(seconds=5), naive)]
    root = ET.fromstring(str(gantt(rows, NOW)))
    assert title(by_class(root, "rect", "gantt-bar")[0]) == "a: succeeded, 5.0 s"
    bars = by_class(ET.fromstring(str(bar_chart([(naive, 1, 0)], label="x"))), "g", "bar")
    assert bars[-1].get("data-minute") == "12:30"


DURATIONS = [
    (0.04, "40 ms"),
    (1.0, "1.0 s"),
    (4.25, "4.2 s"),
    (9.96, "10 s"),
    (37.4, "37 s"),
    (185, "3 min 5 s"),
    (120.2, "2 min"),
    (7800, "2 h 10 min"),
    (7200, "2 h"),
    (86400 * 2 + 60, "48 h 1 min"),
]


@pytest.mark.parametrize(("seconds", "text"), DURATIONS)
def test_durations_read_as_people_say_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text
