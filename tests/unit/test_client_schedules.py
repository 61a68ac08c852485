"""Schedules in the SDK and the CLI without a server: protobuf to plain
values and back, and durations and times as people type them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.cli import times
from orchestrator.cli.exits import UsageError
from orchestrator.client import Fire, Overlap, Schedule, TaskSpec, _convert, to_jsonable
from orchestrator.client import _convert_schedules as convert
from orchestrator.client._schedules import overlap_policy, seconds, template
from orchestrator.errors import InvalidArgument
from orchestrator.model import ConcurrencyStrategy
from orchestrator.proto import schedules_pb2, tasks_pb2

CREATED = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)


def stamp(value: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def test_a_task_schedule_as_plain_values() -> None:
    message = schedules_pb2.Schedule(
        id="s1",
        name="nightly",
        cron="30 2 * * *",
        time_zone="Europe/Paris",
        next_fire_times=[stamp(CREATED + timedelta(hours=2, minutes=30))],
        task=tasks_pb2.CreateTaskRequest(
            type="echo",
            title="nightly echo",
            labels={"team": "data"},
            max_attempts=3,
            concurrency_key="reports",
            concurrency_limit=2,
            concurrency_strategy=tasks_pb2.CONCURRENCY_STRATEGY_CANCEL_NEWEST,
            rate_limit_bucket="mail",
            rate_limit=5,
            rate_limit_period=tasks_pb2.RATE_LIMIT_PERIOD_MINUTE,
        ),
        overlap=schedules_pb2.OVERLAP_POLICY_BUFFER_ONE,
        jitter_seconds=30,
        end_at=stamp(CREATED + timedelta(days=30)),
        catchup_window_seconds=3600,
        note="night shift",
        owner_id="u1",
        created_at=stamp(CREATED),
        last_fired_at=stamp(CREATED - timedelta(days=1)),
        last_task_id="t9",
    )
    message.task.input.update({"n": 3, "names": ["a", "b"]})

    schedule = convert.schedule(message)

    assert isinstance(schedule, Schedule)
    assert schedule.cron == "30 2 * * *" and schedule.interval_seconds == 0
    assert schedule.next_fire_times == (datetime(2026, 3, 29, 1, 30, tzinfo=UTC),)
    assert schedule.task == TaskSpec(
        "echo",
        {"n": 3, "names": ["a", "b"]},
        title="nightly echo",
        labels={"team": "data"},
        max_attempts=3,
        concurrency_key="reports",
        concurrency_limit=2,
        concurrency_strategy=ConcurrencyStrategy.CANCEL_NEWEST,
        rate_limit_bucket="mail",
        rate_limit=5,
        rate_limit_period="minute",
    )
    assert isinstance(schedule.task.input["n"], int)  # not 3.0
    assert schedule.workflow_id == "" and schedule.input == {}
    assert schedule.overlap is Overlap.BUFFER_ONE
    assert schedule.start_at is None and schedule.end_at == CREATED + timedelta(days=30)
    assert schedule.last_fired_at == CREATED - timedelta(days=1)
    assert (schedule.last_task_id, schedule.last_run_id) == ("t9", "")
    document = to_jsonable(schedule)
    assert json.loads(json.dumps(document)) == document
    assert document["overlap"] == "BUFFER_ONE"
    assert document["task"]["input"] == {"n": 3, "names": ["a", "b"]}


def test_a_paused_workflow_schedule_with_the_default_overlap() -> None:
    message = schedules_pb2.Schedule(
        id="s2", name="etl", interval_seconds=90, workflow_id="w1", paused=True
    )
    message.input.update({"rows": 3})

    schedule = convert.schedule(message)

    assert schedule.task is None and schedule.workflow_id == "w1"
    assert schedule.input == {"rows": 3}
    assert schedule.paused and schedule.next_fire_times == ()
    # The server's zero value is its default, skip.
    assert schedule.overlap is Overlap.SKIP
    assert schedule.last_fired_at is None and schedule.created_at is None


def test_a_fire_names_what_it_started() -> None:
    fire = convert.fire(schedules_pb2.ScheduleFire(scheduled_at=stamp(CREATED), run_id="r1"))

    assert fire == Fire(CREATED, "", "r1")


def test_every_overlap_policy_goes_and_comes_back() -> None:
    for policy in Overlap:
        assert convert.overlap(convert.overlap_message(policy)) is policy


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [
        ("skip", Overlap.SKIP),
        ("buffer_one", Overlap.BUFFER_ONE),
        ("Allow-All", Overlap.ALLOW_ALL),
        ("CANCEL_OTHER", Overlap.CANCEL_OTHER),
        (Overlap.BUFFER_ONE, Overlap.BUFFER_ONE),
    ],
)
def test_overlap_spellings(given_value: Overlap | str, expected: Overlap) -> None:
    assert overlap_policy(given_value) is expected


def test_an_unknown_overlap_names_the_choices() -> None:
    with pytest.raises(InvalidArgument) as caught:
        overlap_policy("buffer_all")
    (violation,) = caught.value.violations
    assert violation.field == "overlap"
    assert "skip, buffer_one, allow_all, cancel_other" in violation.description


def test_a_template_gets_no_made_up_idempotency_key() -> None:
    made = template(TaskSpec("echo", {"n": 1}, title="t", priority=5))

    assert made.idempotency_key == ""
    assert (made.type, made.title, made.priority) == ("echo", "t", 5)
    assert dict(made.input) == {"n": 1}
    assert template(TaskSpec("echo", idempotency_key="mine")).idempotency_key == "mine"


def test_a_template_input_json_cannot_hold_names_its_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        template(TaskSpec("echo", {"when": {1, 2}}))

    assert [v.field for v in caught.value.violations] == ["task.input.when"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 0), (0, 0), (90, 90), (90.0, 90), (timedelta(minutes=5), 300)],
)
def test_durations_in_whole_seconds(value: float | timedelta | None, expected: int) -> None:
    assert seconds(value, "jitter_seconds") == expected


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        (1.5, "whole seconds"),
        (timedelta(milliseconds=1500), "whole seconds"),
        (float("nan"), "whole seconds"),
        (True, "whole seconds"),
        (2**31, "at most"),
    ],
)
def test_durations_the_request_cannot_carry(value: float | timedelta, complaint: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        seconds(value, "interval_seconds")

    (violation,) = caught.value.violations
    assert violation.field == "interval_seconds" and complaint in violation.description


def test_a_naive_time_is_local_time() -> None:
    naive = datetime(2026, 7, 1, 12, 0)

    assert _convert.timestamp(naive).seconds == int(naive.timestamp())
    aware = datetime(2026, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert _convert.timestamp(aware).ToDatetime(tzinfo=UTC) == datetime(
        2026, 7, 1, 10, 0, tzinfo=UTC
    )


# -- the CLI's durations and times -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1d2h3m4s", 93784),
        ("90", 90),
        (" 1H ", 3600),
        ("0s", 0),
    ],
)
def test_durations_as_people_type_them(text: str, expected: int) -> None:
    assert times.duration(text, "--every") == timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["", "m", "1.5h", "5x", "30m1h", "-5s", "1 h", "5mm"])
def test_what_is_not_a_duration_names_the_option(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        times.duration(text, "--jitter")

    assert str(caught.value).startswith(f"--jitter {text!r}: expected a duration such as 30s")


@given(st.integers(min_value=0, max_value=10 * 366 * 86400))
def test_a_duration_reads_back_what_it_says(total: int) -> None:
    assert times.duration(times.spoken(total), "--every").total_seconds() == total


def test_spoken_durations() -> None:
    assert [times.spoken(n) for n in (0, 45, 60, 5400, 86461)] == [
        "0s",
        "45s",
        "1m",
        "1h30m",
        "1d1m1s",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T09:30:00Z", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
        ("2026-12-01T11:30:00+02:00", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
    ],
)
def test_times_with_an_offset(text: str, expected: datetime) -> None:
    assert times.moment(text, "--from") == expected


def test_a_time_without_an_offset_is_local() -> None:
    found = times.moment("2026-12-01 09:30", "--start")

    assert found.tzinfo is not None
    assert found.timestamp() == datetime(2026, 12, 1, 9, 30).timestamp()
    assert times.moment("2026-12-01", "--start").timestamp() == datetime(2026, 12, 1).timestamp()


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "12/01/2026", ""])
def test_what_is_not_a_time_names_the_option(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        times.moment(text, "--to")

    assert str(caught.value).startswith(f"--to {text!r}: expected an ISO 8601 time")
