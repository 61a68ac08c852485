"""orchestrator.engine.throttle.LoginThrottle: failed logins counted per
username and per peer, over a sliding window, with the wait in the refusal."""

from __future__ import annotations

import re
import time

import pytest

from orchestrator.engine.throttle import LoginThrottle
from orchestrator.errors import ResourceExhausted

WAIT = re.compile(r"try again in (\d+) seconds")


def wait_of(error: ResourceExhausted) -> int:
    match = WAIT.search(error.message)
    assert match, error.message
    return int(match.group(1))


def test_the_limit_th_failure_closes_the_door_with_the_wait() -> None:
    throttle = LoginThrottle(per_user=3, per_peer=12, window_seconds=60)
    for _ in range(3):
        throttle.check("alice", "ipv4:10.0.0.1")
        throttle.failed("alice", "ipv4:10.0.0.1")
    with pytest.raises(ResourceExhausted) as caught:
        throttle.check("alice", "ipv4:10.0.0.1")
    assert 59 <= wait_of(caught.value) <= 60


def test_below_the_limit_nothing_is_refused() -> None:
    throttle = LoginThrottle(per_user=3, per_peer=12, window_seconds=60)
    for _ in range(2):
        throttle.failed("alice", "ipv4:10.0.0.1")
    throttle.check("alice", "ipv4:10.0.0.1")


def test_the_username_limit_holds_from_any_address() -> None:
    # Spreading guesses over many addresses does not help against one account.
    throttle = LoginThrottle(per_user=3, per_peer=12, window_seconds=60)
    for octet in range(3):
        throttle.failed("alice", f"ipv4:10.0.0.{octet}")
    with pytest.raises(ResourceExhausted):
        throttle.check("alice", "ipv4:192.168.1.1")


def test_the_username_limit_ignores_case() -> None:
    throttle = LoginThrottle(per_user=3, per_peer=12, window_seconds=60)
    for name in ("ALICE", "Alice", "aLiCe"):
        throttle.failed(name, "ipv4:10.0.0.1")
    with pytest.raises(ResourceExhausted):
        throttle.check("alice", "ipv4:10.0.0.2")


def test_other_users_are_not_locked_out_by_one_users_failures() -> None:
    throttle = LoginThrottle(per_user=3, per_peer=12, window_seconds=60)
    for _ in range(3):
        throttle.failed("alice", "ipv4:10.0.0.1")
    throttle.check("bob", "ipv4:10.0.0.2")


def test_the_peer_limit_stops_spraying_many_usernames() -> None:
    throttle = LoginThrottle(per_user=3, per_peer=12, window_seconds=60)
    for index in range(12):
        throttle.check(f"user{index}", "ipv4:10.0.0.1")
        throttle.failed(f"user{index}", "ipv4:10.0.0.1")
    with pytest.raises(ResourceExhausted) as caught:
        throttle.check("a-fresh-name", "ipv4:10.0.0.1")
    assert wait_of(caught.value) > 0
    # Another address is unaffected.
    throttle.check("a-fresh-name", "ipv4:10.0.0.2")


def test_the_wait_counts_down_from_the_oldest_failure_in_the_window() -> None:
    throttle = LoginThrottle(per_user=2, per_peer=100, window_seconds=30)
    throttle.failed("alice", "p")
    throttle.failed("alice", "p")
    with pytest.raises(ResourceExhausted) as caught:
        throttle.check("alice", "p")
    assert 29 <= wait_of(caught.value) <= 30


def test_the_door_opens_again_after_the_window() -> None:
    window = 0.3
    throttle = LoginThrottle(per_user=2, per_peer=100, window_seconds=window)
    throttle.failed("alice", "p")
    throttle.failed("alice", "p")
    with pytest.raises(ResourceExhausted) as caught:
        throttle.check("alice", "p")
    # Never "0 seconds": the message rounds the wait up.
    assert wait_of(caught.value) == 1
    # The window is the behaviour under test, so waiting it out is the test.
    time.sleep(window + 0.05)
    throttle.check("alice", "p")
