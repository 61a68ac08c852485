"""Password hashing with argon2id at OWASP's recommended parameters."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

# OWASP (2025): argon2id, m=19 MiB, t=2, p=1.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# Verified against when the user does not exist, so that an unknown user and a
# wrong password take the same time.
_DUMMY_HASH = _hasher.hash("orchestrator-dummy-password")


# One thread: hashing is meant to be slow, and more threads than cores would
# starve the event loop of its own (in-flight calls could not finish).
_hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argon2")


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
        matches = _hasher.verify(password_hash or _DUMMY_HASH, password)
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
