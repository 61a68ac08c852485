"""`orchestrator token create|list|revoke`: API tokens for workers and
automation."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.text import Text

from orchestrator.cli import render
from orchestrator.cli.connect import run
from orchestrator.cli.options import Output, OutputFormat, Url
from orchestrator.client import ApiToken, Client

app = typer.Typer(name="token", help="API tokens for workers and automation.", no_args_is_help=True)


class Scope(enum.StrEnum):
    WORKER = "worker"
    API = "api"


@app.command()
def create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="What the token is for.")],
    scope: Annotated[
        Scope,
        typer.Option(
            "--scope",
            case_sensitive=False,
            help="worker: WorkerService only (for `orchestrator worker`); api: acts as you.",
            show_default=False,
        ),
    ],
    expires_in: Annotated[
        int, typer.Option("--expires-in", min=0, metavar="SECONDS", help="0: never expires.")
    ] = 0,
    url: Url = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Create an API token and print its secret, this once: the server keeps
    only a hash. The secret alone goes to stdout, so
    `export ORCHESTRATOR_TOKEN=$(orchestrator token create NAME --scope worker)`
    works."""

    async def command(client: Client) -> None:
        created = await client.tokens.create(name, scope.value, expires_in)
        if output is OutputFormat.JSON:
            render.json_document(created)
            return
        token = created.api_token
        expiry = f", expires {render.when(token.expires_at)}" if token.expires_at else ""
        render.note(
            f"Created {token.scope} token {token.name!r} ({token.id}{expiry}). "
            "Keep the secret below now: it is not shown again.",
        )
        render.out.print(created.token, markup=False, highlight=False, soft_wrap=True)

    run(command, url)


@app.command("list")
def list_tokens(url: Url = None, output: Output = OutputFormat.TABLE) -> None:
    """List API tokens (yours; an admin's: everyone's), revoked ones included."""

    async def command(client: Client) -> None:
        found = await client.tokens.list()
        if output is OutputFormat.JSON:
            render.json_document(found)
            return
        render.table(
            ("ID", "NAME", "SCOPE", "PREFIX", "CREATED", "EXPIRES", "LAST USED", "STATE"),
            (
                (
                    t.id,
                    t.name,
                    t.scope,
                    t.prefix + "…",
                    render.when(t.created_at),
                    render.when(t.expires_at) or "never",
                    render.when(t.last_used_at),
                    _state(t),
                )
                for t in found
            ),
            empty="no API tokens",
        )

    run(command, url)


def _state(token: ApiToken) -> Text:
    if token.revoked_at:
        return Text("revoked", style="red")
    if token.expires_at and token.expires_at <= datetime.now(UTC):
        return Text("expired", style="yellow")
    return Text("active", style="green")


@app.command()
def revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id (not its secret).")],
    url: Url = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Stop an API token working, at once."""

    async def command(client: Client) -> None:
        token = await client.tokens.revoke(token_id)
        if output is OutputFormat.JSON:
            render.json_document(token)
            return
        render.out.print(f"Revoked token {token.name!r} ({token.id}).", markup=False)

    run(command, url)
