"""Password hashing with argon2id at OWASP's recommended parameters, and the
bounded queue of logins waiting for it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from orchestrator.errors import ResourceExhausted

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

# OWASP (2025): argon2id, m=19 MiB, t=2, p=1.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so that an unknown user
    and a wrong password take the same time. Made on first use: importing
    this module (the CLI does, through config) must cost nothing."""
    return _hasher.hash("orchestrator-dummy-password")


# One thread: hashing is meant to be slow, and more threads than cores would
# starve the event loop of its own (in-flight calls could not finish).
HASHING_THREADS = 1
_hashing = ThreadPoolExecutor(max_workers=HASHING_THREADS, thread_name_prefix="argon2")


class LoginQueue:
    """At most `size` logins at a time waiting for a password check or doing
    one; the next is refused at once rather than queued. So a flood of
    logins costs its senders refusals, not everyone else a wait: a login let
    in has at most `size - 1` checks of other logins ahead of it, plus one a
    thread whose caller hung up while it ran (a check not yet begun is
    dropped with its caller; one under way runs to its end), so it is
    answered within about `size + 1` check times on one thread."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._in_progress = 0

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Held for the whole login; ResourceExhausted when the queue is full."""
        if self._in_progress >= self._size:
            raise ResourceExhausted("too many logins in progress: try again shortly")
        self._in_progress += 1
        try:
            yield
        finally:
            self._in_progress -= 1


def hash_password(password: str) -> str:
    return _hasher.hash(password)


async def hash_password_async(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_hashing, hash_password, password)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(
        _hashing, verify_password, password_hash, password
    )


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not there is a hash to check against: with
    none, the dummy is verified and the answer is no."""
    try:
        matches = _hasher.verify(password_hash or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return bool(password_hash) and matches


USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{2,63}$")


def username_problem(username: str) -> str | None:
    if USERNAME.match(username):
        return None
    return "3 to 64 letters, digits or _.@- , starting with a letter or digit"


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"must be at most {MAX_PASSWORD_LENGTH} characters"
    return None
