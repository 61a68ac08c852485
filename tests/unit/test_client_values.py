"""Plain values for scripts (to_jsonable) and the retry schedule."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from orchestrator.client import (
    NodeRun,
    NodeStatus,
    Page,
    RetryPolicy,
    RunStatus,
    WorkflowRun,
    to_jsonable,
)

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_run_as_json() -> None:
    run = WorkflowRun(
        id="r1",
        workflow_id="w1",
        workflow_version=2,
        status=RunStatus.SUCCEEDED,
        nodes=(NodeRun("a", NodeStatus.SUCCEEDED, "t1", {"n": 1}, "", STARTED, None),),
        input={},
        error="",
        owner_id="u1",
        last_sequence=7,
        created_at=STARTED,
        finished_at=None,
    )

    document = to_jsonable(Page((run,), "next"))

    assert json.loads(json.dumps(document)) == document
    assert document["next_page_token"] == "next"
    assert document["items"][0]["status"] == "SUCCEEDED"
    assert document["items"][0]["created_at"] == "2026-01-02T03:04:05+00:00"
    assert document["items"][0]["nodes"] == [
        {
            "node_id": "a",
            "status": "SUCCEEDED",
            "task_id": "t1",
            "output": {"n": 1},
            "error": "",
            "started_at": "2026-01-02T03:04:05+00:00",
            "finished_at": None,
        }
    ]
    assert run.node("a").finished and run.finished


def test_retry_delays_grow_to_a_ceiling_with_jitter() -> None:
    policy = RetryPolicy(first_delay=0.1, max_delay=1.0, give_up_after=60)
    for failures, ceiling in [(0, 0.1), (1, 0.2), (3, 0.8), (4, 1.0), (50, 1.0)]:
        delays = [policy.delay(failures) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (failures, delays)


def test_retries_stop_when_the_time_is_up() -> None:
    attempts = RetryPolicy(first_delay=0.01, max_delay=0.01, give_up_after=0.05).start()
    deadline = time.monotonic() + 5
    delays = []
    while (delay := attempts.next_delay()) is not None:
        assert time.monotonic() < deadline, "never gave up"
        delays.append(delay)
        time.sleep(delay)
    assert delays and attempts.failures == len(delays)
    attempts.reset()
    assert attempts.next_delay() is not None


def test_never_retrying_and_bad_policies() -> None:
    assert RetryPolicy(give_up_after=0).start().next_delay() is None
    with pytest.raises(ValueError):
        RetryPolicy(first_delay=0)
    with pytest.raises(ValueError):
        RetryPolicy(first_delay=2, max_delay=1)
