"""orchestrator.auth.passwords: argon2id hashing and the rules for new passwords."""

from __future__ import annotations

import pytest

from orchestrator.auth.passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    hash_password,
    password_problem,
    verify_password,
)


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password("correct horse battery")


def test_hash_is_argon2id_at_owasp_parameters(stored: str) -> None:
    assert stored.startswith("$argon2id$")
    assert "m=19456,t=2,p=1" in stored


def test_hash_is_salted(stored: str) -> None:
    assert hash_password("correct horse battery") != stored


def test_right_password_verifies(stored: str) -> None:
    assert verify_password(stored, "correct horse battery") is True


@pytest.mark.parametrize(
    "attempt", ["correct horse batter", "Correct horse battery", "", "x" * 100]
)
def test_wrong_password_fails(stored: str, attempt: str) -> None:
    assert verify_password(stored, attempt) is False


@pytest.mark.parametrize("attempt", ["anything", "orchestrator-dummy-password"])
def test_unknown_user_fails_even_with_the_dummy_password(attempt: str) -> None:
    # No hash (unknown user): checked against a dummy hash for equal timing,
    # but never a success, not even with the dummy's own password.
    assert verify_password(None, attempt) is False


@pytest.mark.parametrize("broken", ["not-a-hash", "$argon2id$v=19$m=1,t=1,p=1$bad"])
def test_malformed_hash_fails_without_raising(broken: str) -> None:
    assert verify_password(broken, "whatever") is False
    assert verify_password(broken, "orchestrator-dummy-password") is False


def test_empty_hash_is_not_the_dummy() -> None:
    # An empty stored hash must not turn into the dummy hash's password.
    assert verify_password("", "whatever") is False
    assert verify_password("", "orchestrator-dummy-password") is False


@pytest.mark.parametrize(
    ("password", "refused"),
    [
        ("", True),
        ("x" * (MIN_PASSWORD_LENGTH - 1), True),
        ("x" * MIN_PASSWORD_LENGTH, False),
        ("ünïcödé!", False),
        ("x" * MAX_PASSWORD_LENGTH, False),
        ("x" * (MAX_PASSWORD_LENGTH + 1), True),
    ],
)
def test_password_rules(password: str, refused: bool) -> None:
    problem = password_problem(password)
    assert (problem is not None) is refused
    if refused:
        assert "characters" in problem  # type: ignore[operator]


def test_password_problem_names_the_limit() -> None:
    assert str(MIN_PASSWORD_LENGTH) in (password_problem("short") or "")
    assert str(MAX_PASSWORD_LENGTH) in (password_problem("x" * 2000) or "")
