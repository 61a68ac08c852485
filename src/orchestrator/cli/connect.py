"""Running a client command: the client for --url and the environment, the
event loop, and every failure turned into one readable line and its exit
code (see `orchestrator.cli.exits`)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import typer

from orchestrator.cli import outage
from orchestrator.cli.exits import (
    FAILED,
    INTERRUPTED,
    LOGIN_HINT,
    NotLoggedIn,
    UsageError,
    report,
)
from orchestrator.client import Client, RetryPolicy, SessionFile
from orchestrator.errors import OrchestratorError

Command = Callable[[Client], Awaitable[int | None]]
# A person waits a few seconds for a server that is coming back, not half a
# minute for one that is not; streams keep the SDK's longer patience.
CLI_RETRY = RetryPolicy(give_up_after=5.0)


def run(
    command: Command, url: str | None, *, authenticated: bool = True, session_only: bool = False
) -> None:
    """Run `command` with a client and exit with its code (None: 0). The
    client is who the environment says (see `Client.from_env`), or with
    `session_only` the saved session whatever ORCHESTRATOR_TOKEN says."""
    run_local(_with_client(command, url, authenticated, session_only))


def run_local(work: Coroutine[Any, Any, int | None]) -> None:
    """Run `work` and exit with its code (None: 0), or with the one its
    failure deserves after one line on stderr."""
    outage.install()
    try:
        code = asyncio.run(work)
    except (OrchestratorError, UsageError) as error:
        raise typer.Exit(report(error)) from None
    except KeyboardInterrupt:
        raise typer.Exit(INTERRUPTED) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        # A bug of ours: still one line, unless asked for the whole story.
        if os.environ.get("ORCHESTRATOR_DEBUG"):
            raise
        print(
            f"orchestrator: unexpected error: {type(exc).__name__}: {exc} "
            "(ORCHESTRATOR_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        raise typer.Exit(FAILED) from None
    raise typer.Exit(code or 0)


async def _with_client(
    command: Command, url: str | None, authenticated: bool, session_only: bool
) -> int | None:
    session_file = SessionFile()
    try:
        # Made inside the loop: grpc.aio channels belong to the loop they are made on.
        client = _saved_session(url, session_file) if session_only else None
        client = client or Client.from_env(url, session_file=session_file, retry=CLI_RETRY)
    except ValueError as exc:  # a TLS file named by the environment cannot be read
        raise UsageError(str(exc)) from None
    async with client:
        if authenticated and not client.has_credentials:
            raise NotLoggedIn(_not_logged_in(client.url, session_file))
        return await command(client)


def _saved_session(url: str | None, session_file: SessionFile) -> Client | None:
    saved = session_file.load()
    if saved is None or (url and url != saved.url):
        return None
    return Client(saved.url, session=saved, session_file=session_file, retry=CLI_RETRY)


def _not_logged_in(url: str, session_file: SessionFile) -> str:
    saved = session_file.load()
    if saved is not None and saved.url != url:
        return (
            f"not logged in to {url} (the saved session is for {saved.url}): "
            f"log in with `orchestrator login --url {url} --username NAME`, "
            "or set ORCHESTRATOR_TOKEN"
        )
    return f"not logged in to {url}: {LOGIN_HINT}"
