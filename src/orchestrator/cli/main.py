"""`orchestrator`: the server's commands (serve, migrate, dev, version), the
worker's, and the client's (login, task, workflow, user, token; see
`_register_client_commands`)."""

from __future__ import annotations

import asyncio
import sys

import typer

from orchestrator import __version__
from orchestrator.cli import exits
from orchestrator.cli.helptext import Commands
from orchestrator.cli.settings import settings_or_exit
from orchestrator.cli.worker import worker

app = typer.Typer(
    name="orchestrator",
    help="Task and workflow orchestration server, spoken to over gRPC, and its client.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Commands,
)


@app.command()
def serve(
    migrate: bool = typer.Option(
        True, "--migrate/--no-migrate", help="Run database migrations at start-up."
    ),
) -> None:
    """Run the server (configured by environment variables)."""
    settings = settings_or_exit()  # before the heavy import: a bad value fails fast
    from orchestrator.server import serve as run

    if not migrate:
        settings = settings.model_copy(update={"auto_migrate": False})
    try:
        asyncio.run(run(settings))
    except OSError as exc:
        raise typer.Exit(_refused(exc)) from None


@app.command()
def migrate() -> None:
    """Bring the database schema up to date, then exit."""
    from orchestrator.store import Database, upgrade

    settings = settings_or_exit()

    async def run() -> str | None:
        database = Database(settings.database_url)
        try:
            return await upgrade(database)
        finally:
            await database.close()

    print(f"database at revision {asyncio.run(run())}")


@app.command()
def dev(
    slots: int = typer.Option(4, "--slots", min=1, help="Slots of the demo worker."),
) -> None:
    """Server, demo worker and an admin account in one command, for a first look."""
    from orchestrator.cli.dev import dev_environment, run_dev

    dev_environment()
    settings = settings_or_exit()
    try:
        asyncio.run(run_dev(settings, slots))
    except OSError as exc:
        raise typer.Exit(_refused(exc)) from None


def _refused(error: OSError) -> int:
    """One line for a server that could not start; exit 2 for a taken port
    (the user's to change), 1 otherwise."""
    from orchestrator.http import PortInUse

    print(f"orchestrator: {error}", file=sys.stderr)
    return exits.USAGE if isinstance(error, PortInUse) else 1


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


app.command()(worker)

CLIENT_PANEL = "Client: for people (tables, live views) and scripts (-o json)"


def _register_client_commands() -> None:
    # `runs` adds run, runs, watch and cancel to the workflow group.
    from orchestrator.cli import runs, schedules, session, status, tasks, tokens, users, workflows  # noqa: F401

    for command in (session.login, session.logout, session.whoami, status.status):
        app.command(rich_help_panel=CLIENT_PANEL)(command)
    app.add_typer(tasks.app, rich_help_panel=CLIENT_PANEL)
    app.add_typer(workflows.app, rich_help_panel=CLIENT_PANEL)
    app.add_typer(schedules.app, rich_help_panel=CLIENT_PANEL)
    app.add_typer(users.app, rich_help_panel=CLIENT_PANEL)
    app.add_typer(tokens.app, rich_help_panel=CLIENT_PANEL)


_register_client_commands()
