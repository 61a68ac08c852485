"""`orchestrator user create|list|disable|enable|reset-password` (admins)."""

from __future__ import annotations

import enum
from typing import Annotated

import typer
from rich.text import Text

from orchestrator.cli import inputs, render
from orchestrator.cli.connect import run, run_local
from orchestrator.cli.options import Output, OutputFormat, PasswordStdin, Url
from orchestrator.client import Client, User

app = typer.Typer(
    name="user",
    help="Users, for admins (`user create --local` needs no server: the first admin).",
    no_args_is_help=True,
)


class Role(enum.StrEnum):
    MEMBER = "member"
    ADMIN = "admin"


Username = Annotated[str, typer.Argument(metavar="NAME", help="The new user's name.")]
UserRef = Annotated[str, typer.Argument(metavar="NAME_OR_ID", help="A user's name or id.")]


@app.command()
def create(
    username: Username,
    role: Annotated[Role, typer.Option("--role", case_sensitive=False)] = Role.MEMBER,
    password_stdin: PasswordStdin = False,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="Write the user straight into the database named by DATABASE_URL "
            "(migrating it first), without a server: for the first admin.",
        ),
    ] = False,
    url: Url = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Create a user (the password is prompted for, or read with --password-stdin)."""
    if local:
        from orchestrator.cli.settings import settings_or_exit

        database_url = settings_or_exit().database_url
        run_local(_create_locally(database_url, username, role, password_stdin, output))
        return

    async def command(client: Client) -> None:
        password = inputs.password(password_stdin, confirm=True)
        _show(await client.users.create(username, password, role.value), "Created", output)

    run(command, url)


async def _create_locally(
    database_url: str, username: str, role: Role, password_stdin: bool, output: OutputFormat
) -> None:
    # Imported here: the database layer is only needed by this command.
    from orchestrator.cli.local_users import create_user

    password = inputs.password(password_stdin, confirm=True)
    user = await create_user(database_url, username, password, role.value)
    if output is OutputFormat.JSON:
        render.json_document(user)
        return
    render.out.print(
        f"Created {user.role} {user.username} ({user.id}) in the database; "
        "log in once a server runs on it.",
        markup=False,
    )


def _show(user: User, verb: str, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        render.json_document(user)
        return
    state = "disabled" if user.disabled else "active"
    render.out.print(f"{verb} {user.role} {user.username} ({user.id}), {state}.", markup=False)


@app.command("list")
def list_users(url: Url = None, output: Output = OutputFormat.TABLE) -> None:
    """List users by name."""

    async def command(client: Client) -> None:
        found = [user async for user in client.users.list_all()]
        if output is OutputFormat.JSON:
            render.json_document(found)
            return
        render.table(
            ("NAME", "ID", "ROLE", "STATE", "CREATED"),
            (
                (
                    u.username,
                    u.id,
                    u.role,
                    Text("disabled", style="yellow") if u.disabled else "active",
                    render.when(u.created_at),
                )
                for u in found
            ),
            empty="no users",
        )

    run(command, url)


@app.command()
def disable(user: UserRef, url: Url = None, output: Output = OutputFormat.TABLE) -> None:
    """Stop a user logging in; their sessions end at once."""

    async def command(client: Client) -> None:
        found = await client.users.find(user)
        _show(await client.users.disable(found.id), "Disabled", output)

    run(command, url)


@app.command()
def enable(user: UserRef, url: Url = None, output: Output = OutputFormat.TABLE) -> None:
    """Let a disabled user log in again."""

    async def command(client: Client) -> None:
        found = await client.users.find(user)
        _show(await client.users.enable(found.id), "Enabled", output)

    run(command, url)


@app.command("reset-password")
def reset_password(
    user: UserRef,
    password_stdin: PasswordStdin = False,
    url: Url = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Give a user a new password; their sessions end at once."""

    async def command(client: Client) -> None:
        found = await client.users.find(user)
        password = inputs.password(password_stdin, confirm=True)
        _show(
            await client.users.reset_password(found.id, password), "Reset the password of", output
        )

    run(command, url)
