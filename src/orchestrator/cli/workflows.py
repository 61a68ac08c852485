"""`orchestrator workflow create|update|validate|list|get|delete`: the
definitions (runs: `orchestrator.cli.runs`)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import inputs, render
from orchestrator.cli.connect import run
from orchestrator.cli.options import Limit, Output, OutputFormat, Url
from orchestrator.client import Client, Workflow
from orchestrator.errors import InvalidArgument

app = typer.Typer(
    name="workflow", help="Workflows: graphs of tasks, and their runs.", no_args_is_help=True
)

File = Annotated[
    Path,
    typer.Option(
        "--file",
        "-f",
        help="YAML or JSON: {name, description?, definition: {nodes: [...], edges: [...]}}.",
        show_default=False,
    ),
]
NameOrId = Annotated[str, typer.Argument(metavar="NAME_OR_ID", help="A workflow's name or id.")]
Version = Annotated[int, typer.Option("--version", min=0, help="A version (0: the latest).")]


@contextlib.contextmanager
def _about(file: Path) -> Iterator[None]:
    """The server's verdict on a file's workflow, naming the file."""
    try:
        yield
    except InvalidArgument as exc:
        if not exc.violations:
            raise
        raise InvalidArgument(f"{file} is not a valid workflow", exc.violations) from None


@app.command()
def create(file: File, url: Url = None, output: Output = OutputFormat.TABLE) -> None:
    """Store a new workflow from a file (validated first)."""

    async def command(client: Client) -> None:
        spec = inputs.workflow_file(file)
        with _about(file):
            workflow = await client.workflows.create(spec.name, spec.definition, spec.description)
        _stored(workflow, "Created", output)

    run(command, url)


@app.command()
def update(file: File, url: Url = None, output: Output = OutputFormat.TABLE) -> None:
    """Store a new version of the workflow the file names; runs already
    started keep theirs."""

    async def command(client: Client) -> None:
        spec = inputs.workflow_file(file)
        current = await client.workflows.find(spec.name)
        with _about(file):
            workflow = await client.workflows.update(current.id, spec.definition, spec.description)
        _stored(workflow, "Updated", output)

    run(command, url)


def _stored(workflow: Workflow, verb: str, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        render.json_document(workflow)
        return
    nodes = len(workflow.definition.nodes)
    render.out.print(
        f"{verb} workflow {workflow.name} (id {workflow.id}, version {workflow.version}, "
        f"{nodes} node{'s' if nodes != 1 else ''}).",
        markup=False,
    )


@app.command()
def validate(file: File, url: Url = None, output: Output = OutputFormat.TABLE) -> None:
    """Check a workflow file with the server, without storing it."""

    async def command(client: Client) -> None:
        spec = inputs.workflow_file(file)
        with _about(file):
            order = await client.workflows.validate(spec.definition)
        if output is OutputFormat.JSON:
            render.json_document({"valid": True, "name": spec.name, "order": order})
            return
        render.out.print(
            f"{file} is valid; nodes run in the order: {' → '.join(order)}", markup=False
        )

    run(command, url)


@app.command("list")
def list_workflows(limit: Limit = 50, url: Url = None, output: Output = OutputFormat.TABLE) -> None:
    """List workflows (their latest versions), newest first."""

    async def command(client: Client) -> None:
        found = await render.first(client.workflows.list_all(), limit)
        if output is OutputFormat.JSON:
            render.json_document(found)
            return
        render.table(
            ("NAME", "ID", "VERSION", "NODES", "UPDATED", "DESCRIPTION"),
            (
                (
                    w.name,
                    w.id,
                    str(w.version),
                    str(len(w.definition.nodes)),
                    render.when(w.updated_at),
                    w.description,
                )
                for w in found
            ),
            empty="no workflows",
        )

    run(command, url)


@app.command()
def get(
    workflow: NameOrId, version: Version = 0, url: Url = None, output: Output = OutputFormat.TABLE
) -> None:
    """Show a workflow and its graph."""

    async def command(client: Client) -> None:
        found = await client.workflows.find(workflow)
        if version:
            found = await client.workflows.get(found.id, version)
        if output is OutputFormat.JSON:
            render.json_document(found)
            return
        render.fields(
            [
                ("name", found.name),
                ("id", found.id),
                ("version", str(found.version)),
                ("description", found.description),
                ("updated", render.when(found.updated_at)),
            ]
        )
        render.out.print()
        render.table(
            ("NODE", "TYPE", "INPUT", "INPUT EXPRESSION"),
            (
                (n.id, n.type, json.dumps(n.input) if n.input else "", n.input_expression)
                for n in found.definition.nodes
            ),
            empty="no nodes",
        )
        if found.definition.edges:
            render.out.print()
            render.table(
                ("FROM", "TO", "CONDITION"),
                ((e.source, e.target, e.condition) for e in found.definition.edges),
                empty="",
            )

    run(command, url)


@app.command()
def delete(workflow: NameOrId, url: Url = None) -> None:
    """Delete a workflow with all its versions (refused while runs are in progress)."""

    async def command(client: Client) -> None:
        found = await client.workflows.find(workflow)
        await client.workflows.delete(found.id)
        render.out.print(f"Deleted workflow {found.name} ({found.id}).", markup=False)

    run(command, url)
