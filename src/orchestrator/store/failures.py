"""Database failures, as the rest of the server sees them.

The driver's exceptions stop here: `mapped()` turns those that say the
database cannot serve right now into `Unavailable` (UNAVAILABLE, which
clients retry), those that say this transaction lost a race with another
into `Aborted` (ABORTED; the engine runs the transaction again first), and
lets everything else through, so a real bug still answers INTERNAL with its
traceback logged.

    unavailable   connection refused, lost or not yet accepted (PostgreSQL
                  stopping, starting up, out of connections), the pool's
                  wait for a connection ran out, SQLite busy or locked past
                  its busy timeout; also a database that cannot be opened
                  (SQLite file or PostgreSQL database gone, login refused):
                  the server cannot serve, which is not a bug in it
    conflict      deadlock detected, serialization failure, a unique
                  constraint that a concurrent transaction took first
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import sqlalchemy.exc

from orchestrator.errors import Aborted, OrchestratorError, Unavailable

UNAVAILABLE = "database unavailable, retry"
CONFLICT = "conflict with a concurrent change, retry"


# PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_UNAVAILABLE_CLASSES = ("08",)  # connection exception
_UNAVAILABLE_STATES = frozenset(
    {
        "57P01",  # admin_shutdown: the server is stopping
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: starting up, shutting down, in recovery
        "53300",  # too_many_connections
        "3D000",  # invalid_catalog_name: the database is gone
        "28000",  # invalid_authorization_specification
        "28P01",  # invalid_password
    }
)
_CONFLICT_STATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "23505",  # unique_violation
    }
)
# SQLite primary result codes (the low byte of an extended code).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_CANTOPEN = 14
_SQLITE_CONSTRAINT_UNIQUE = frozenset({1555, 2067})  # PRIMARYKEY, UNIQUE


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, the driver error SQLAlchemy wrapped, and their causes."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.append(current.__cause__)
        if not current.__suppress_context__:
            pending.append(current.__context__)
        if isinstance(current, sqlalchemy.exc.DBAPIError):
            pending.append(current.orig)


def is_busy(error: BaseException) -> bool:
    """Whether SQLite refused because another connection holds its lock."""
    return any(
        isinstance(link, sqlite3.Error)
        and link.sqlite_errorcode & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
        for link in _chain(error)
    )


def classify(error: BaseException) -> Unavailable | Aborted | None:
    """What a database error means for the caller; None for anything that is
    not a database failure (a bug, a domain error)."""
    if isinstance(error, OrchestratorError):
        # Already an answer (a domain error raised while handling a driver
        # error, say: a duplicate name is ALREADY_EXISTS, not a conflict).
        return None
    for link in _chain(error):
        state = getattr(link, "sqlstate", None)
        if isinstance(state, str):
            if state in _CONFLICT_STATES:
                return Aborted(CONFLICT)
            if state in _UNAVAILABLE_STATES or state.startswith(_UNAVAILABLE_CLASSES):
                return Unavailable(UNAVAILABLE)
        if isinstance(link, sqlite3.Error):
            code = link.sqlite_errorcode
            if code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CANTOPEN):
                return Unavailable(UNAVAILABLE)
            if code in _SQLITE_CONSTRAINT_UNIQUE:
                return Aborted(CONFLICT)
        if isinstance(link, sqlalchemy.exc.DBAPIError) and link.connection_invalidated:
            return Unavailable(UNAVAILABLE)
        # The pool's wait for a free connection, a connect that timed out, a
        # socket that was refused or reset.
        if isinstance(link, sqlalchemy.exc.TimeoutError | TimeoutError | OSError):
            return Unavailable(UNAVAILABLE)
    return None


@contextlib.contextmanager
def mapped() -> Iterator[None]:
    """Re-raise database failures from the block as the errors above."""
    try:
        yield
    except Exception as error:
        answer = classify(error)
        if answer is None:
            raise
        raise answer from error
