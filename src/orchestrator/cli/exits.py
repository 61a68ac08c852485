"""Exit codes (DESIGN §4b) and how a failure reads: one line saying what went
wrong and what to do, the field violations one per line, never a traceback.

    0  done
    1  the task or run failed or was cancelled (or the server failed: INTERNAL)
    2  bad usage or input: arguments, JSON, files, INVALID_ARGUMENT, NOT_FOUND,
       ALREADY_EXISTS, FAILED_PRECONDITION
    3  cannot reach or authenticate to the server: UNAVAILABLE, UNAUTHENTICATED,
       PERMISSION_DENIED, RESOURCE_EXHAUSTED (too many failed logins), not logged in
"""

from __future__ import annotations

import re
import sys

from orchestrator.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OrchestratorError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

DONE = 0
FAILED = 1
USAGE = 2
UNREACHABLE = 3
INTERRUPTED = 130

_BY_ERROR: tuple[tuple[type[OrchestratorError], int], ...] = (
    (InvalidArgument, USAGE),
    (NotFound, USAGE),
    (AlreadyExists, USAGE),
    (FailedPrecondition, USAGE),
    (Unauthenticated, UNREACHABLE),
    (PermissionDenied, UNREACHABLE),
    (ResourceExhausted, UNREACHABLE),
    (Unavailable, UNREACHABLE),
)
_WHITESPACE = re.compile(r"\s+")
LOGIN_HINT = "log in with `orchestrator login --username NAME`, or set ORCHESTRATOR_TOKEN"


class UsageError(Exception):
    """Bad arguments, input or environment, found before asking the server."""


class NotLoggedIn(Unauthenticated):
    """Not logged in."""


class DatabaseUnavailable(Unavailable):
    """The database cannot be opened."""


def exit_code(error: OrchestratorError) -> int:
    for kind, code in _BY_ERROR:
        if isinstance(error, kind):
            return code
    return FAILED


def describe(error: OrchestratorError) -> list[str]:
    """The lines that tell a person what went wrong and what to do."""
    message = _WHITESPACE.sub(" ", error.message).strip()
    if isinstance(error, InvalidArgument) and error.violations:
        # Without a message of its own, the error's message is just its
        # violations joined: say so once, then list them.
        joined = "; ".join(f"{v.field}: {v.description}" for v in error.violations)
        joined = _WHITESPACE.sub(" ", joined).strip()
        head = "invalid input:" if message == joined else f"{message.rstrip('.:')}:"
        return [head] + [f"  {v.field}: {v.description}" for v in error.violations]
    if isinstance(error, Unavailable) and not isinstance(error, DatabaseUnavailable):
        return [f"{message} (is the server running? check --url or ORCHESTRATOR_URL)"]
    if isinstance(error, Unauthenticated) and not isinstance(error, NotLoggedIn):
        if "invalid username or password" in message:
            return [message]
        return [f"{message} ({LOGIN_HINT})"]
    return [message]


def report(error: OrchestratorError | UsageError) -> int:
    """Print the failure on stderr; the exit code it deserves."""
    if isinstance(error, UsageError):
        lines, code = [str(error)], USAGE
    else:
        lines, code = describe(error), exit_code(error)
    print(f"orchestrator: {lines[0]}", file=sys.stderr)
    for line in lines[1:]:
        print(line, file=sys.stderr)
    return code
