"""`orchestrator login`, `logout`, `whoami`."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from orchestrator.cli import inputs, render
from orchestrator.cli.connect import run
from orchestrator.cli.exits import UNREACHABLE
from orchestrator.cli.options import Output, OutputFormat, PasswordStdin, Url
from orchestrator.client import Client, to_jsonable
from orchestrator.errors import Unavailable

Username = Annotated[
    str, typer.Option("--username", "-u", help="Who to log in as.", show_default=False)
]


def login(
    username: Username,
    password_stdin: PasswordStdin = False,
    url: Url = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Log in, and keep the session for the commands that follow.

    The session (server, access and refresh token) is kept in
    $ORCHESTRATOR_CONFIG_DIR (default ~/.config/orchestrator, mode 0600) and
    refreshed as needed."""

    async def command(client: Client) -> None:
        password = inputs.password(password_stdin, confirm=False)
        session = await client.login(username, password)
        who = await client.whoami()
        if output is OutputFormat.JSON:
            render.json_document({"url": session.url, "user": who.user})
            return
        render.out.print(
            f"Logged in to {session.url} as {who.user.username} ({who.user.role}).", markup=False
        )
        if os.environ.get("ORCHESTRATOR_TOKEN", "").strip():
            render.note(
                "note: ORCHESTRATOR_TOKEN is set and takes precedence over this session; "
                "unset it to use the session",
                style="yellow",
            )

    run(command, url, authenticated=False)


def logout(url: Url = None) -> None:
    """End the saved session, on the server and here."""

    async def command(client: Client) -> int:
        session = client.session
        if session is None:
            render.note(f"not logged in to {client.url}")
            return 0
        try:
            await client.logout()
        except Unavailable as exc:
            render.note(
                f"logged out here, but the server could not be told ({exc.message}); "
                "the session stays valid there until its refresh token expires",
                style="yellow",
            )
            return UNREACHABLE
        render.out.print(f"Logged out of {session.url}.", markup=False)
        return 0

    # The saved session, whatever ORCHESTRATOR_TOKEN says: that is what to end.
    run(command, url, authenticated=False, session_only=True)


def whoami(url: Url = None, output: Output = OutputFormat.TABLE) -> None:
    """Who the server takes you for, and with which credential."""

    async def command(client: Client) -> None:
        who = await client.whoami()
        if output is OutputFormat.JSON:
            render.json_document({"url": client.url, **to_jsonable(who)})
            return
        via = "a login session" if who.credential == "session" else f"an API token ({who.scope})"
        render.out.print(
            f"{who.user.username} ({who.user.role}) at {client.url}, with {via}", markup=False
        )

    run(command, url)
