"""The dashboard's template filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.web.templating import pretty_json, relative, when


def test_json_shows_whole_numbers_as_written() -> None:
    shown = pretty_json({"seconds": 6.0, "ratio": 0.5, "nested": [{"n": 2.0}], "big": 1e300})
    assert "6.0" not in shown and "2.0" not in shown
    assert '"seconds": 6' in shown and '"ratio": 0.5' in shown and '"n": 2' in shown
    # Past 2**53 a double is no longer an exact integer: left as it is.
    assert '"big": 1e+300' in shown


def test_times_are_relative_with_the_exact_time_on_hover() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    markup = str(when(moment))
    assert markup.startswith(
        '<time datetime="2026-01-02T03:04:05Z" title="2026-01-02 03:04:05 UTC">'
    )
    assert str(when(None)) == "—"
    now = moment + timedelta(minutes=3, seconds=10)
    assert relative(moment, now) == "3 min ago"
    assert relative(now, moment) == "in 3 min"
    assert relative(moment, moment + timedelta(seconds=2)) == "just now"
