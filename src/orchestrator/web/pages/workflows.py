"""/workflows: the caller's workflows, a definition drawn as its graph with a
form that starts a run, and checking a pasted definition by the engine's own
rules."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from orchestrator.client import definition_from_dict, parse_workflow
from orchestrator.errors import FieldViolation, InvalidArgument, NotFound
from orchestrator.model import Definition
from orchestrator.web.graph import workflow_svg
from orchestrator.web.routing import LivePage, action, page
from orchestrator.web.view import View

PAGE_SIZE = 50
RECENT_RUNS = 10
# A pasted definition is read in the server's loop: room for hundreds of
# nodes, too little to stall the loop while it is parsed.
MAX_PASTED = 512 * 1024
# The README's example, offered where there is nothing yet.
EXAMPLE = """\
name: greet
description: Say hello, wait a moment, say it again louder.
definition:
  nodes:
    - id: hello
      type: echo
      input: {greeting: hello}
    - id: pause
      type: sleep
      input: {seconds: 1}
    - id: again
      type: echo
      # CEL over the run's input and the outputs of earlier nodes
      input_expression: "{'greeting': nodes.hello.output.greeting + ', ' + input.name + '!'}"
    - id: apologise
      type: echo
      input: {sorry: true}
  edges:
    - {source: hello, target: pause}
    - {source: pause, target: again, condition: "has(input.name) && input.name != ''"}
    - {source: hello, target: apologise, condition: "!has(input.name) || input.name == ''"}
"""


async def _list(view: View) -> Response:
    token = view.query("page")
    try:
        workflows, next_token = await view.engine.workflows.list_workflows(
            view.caller, PAGE_SIZE, token
        )
    except InvalidArgument:
        # A page link from before a restart with another format, or typed by
        # hand: the first page, rather than an error.
        return view.redirect("/workflows")
    return view.render(
        "workflows.html",
        workflows=workflows,
        next_token=next_token,
        paged=bool(token),
        example=EXAMPLE,
    )


# -- one workflow ----------------------------------------------------------------


def _version(text: str) -> int:
    """A version from the address (0: the latest); NotFound for anything else,
    as for a version that does not exist."""
    if not text:
        return 0
    if not text.isdigit() or int(text) < 1:
        raise NotFound(f"workflow version {text!r} not found")
    return int(text)


async def _workflow_values(view: View, version: int) -> dict[str, Any]:
    workflows = view.engine.workflows
    workflow_id = view.param("workflow_id")
    latest = await workflows.get(view.caller, workflow_id)
    shown = latest
    if version and version != latest.version:
        shown = await workflows.get(view.caller, workflow_id, version)
    runs, more = await workflows.list_runs(view.caller, workflow_id, None, RECENT_RUNS, "")
    return {
        "workflow": shown,
        "latest_version": latest.version,
        "graph": workflow_svg(shown.definition),
        "runs": runs,
        "more_runs": bool(more),
        "input_text": "{}",
        "input_problems": [],
    }


async def _workflow_context(view: View) -> dict[str, Any]:
    return await _workflow_values(view, _version(view.query("version")))


_workflow_page = LivePage("/workflows/{workflow_id}", "workflow.html", _workflow_context)


def _input(text: str) -> tuple[dict[str, Any] | None, str]:
    """The run's input from the form, or why it is not one."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as error:
        return None, f"not valid JSON: {error}"
    if not isinstance(value, dict):
        return None, f"must be a JSON object ({{...}}), not {type(value).__name__}"
    return value, ""


async def _run(view: View) -> Response:
    form = await view.form()
    text = str(form.get("input") or "").strip()
    version = _version(str(form.get("version") or ""))
    run_input, problem = _input(text)
    problems = [problem] if problem else []
    if run_input is not None:
        try:
            run = await view.engine.workflows.start(
                view.caller, view.param("workflow_id"), version, run_input
            )
        except InvalidArgument as error:
            problems = [f"{v.field}: {v.description}" for v in error.violations] or [error.message]
        else:
            return view.redirect(f"/runs/{run.id}", ok="Run started.")
    # Shown again with what was typed, so that it can be corrected.
    values = await _workflow_values(view, version)
    values.update(input_text=text, input_problems=problems)
    live_url = f"/live/workflows/{view.param('workflow_id')}"
    if version:
        live_url += f"?version={version}"
    return view.render("workflow.html", 422, live_url=live_url, **values)


# -- validation ------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML without aliases: a few lines of `*name` can stand for a value
    too large to walk, or one that contains itself."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not accepted here", mark
            )
        return super().compose_node(parent, index)


def _read(text: str) -> Any:
    """The pasted text as plain JSON values; InvalidArgument naming where it
    cannot be read."""
    if len(text) > MAX_PASTED:
        raise InvalidArgument.field("text", f"longer than {MAX_PASTED // 1024} KiB")
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise InvalidArgument.field("text", f"not valid YAML or JSON{where}: {problem}") from None
    try:
        # What the API can carry: YAML's dates and binary have no JSON form.
        return json.loads(json.dumps(data))
    except (TypeError, ValueError) as error:
        raise InvalidArgument.field("text", f"{error}: quote it to make it a string") from None


def _parse(text: str) -> Definition:
    """A whole workflow file (as `orchestrator workflow create -f` reads it)
    or a bare definition, parsed as the CLI parses it."""
    data = _read(text)
    if data is None:
        raise InvalidArgument.field("text", "is empty: paste a workflow in YAML or JSON")
    if isinstance(data, Mapping) and "definition" in data:
        return parse_workflow(data).definition
    return definition_from_dict(data)


async def _validate_form(view: View) -> Response:
    return view.render(
        "validate.html",
        text="",
        example=EXAMPLE,
        checked=False,
        problems=[],
        graph=None,
        order=[],
    )


async def _validate(view: View) -> Response:
    text = str((await view.form()).get("definition") or "")
    problems: list[FieldViolation] = []
    graph = None
    order: list[str] = []
    try:
        definition = _parse(text)
    except InvalidArgument as error:
        problems = list(error.violations)
    else:
        # Drawn even when the engine finds problems: the picture helps find them.
        graph = workflow_svg(definition)
        try:
            order = view.engine.workflows.validate(definition)
        except InvalidArgument as error:
            problems = list(error.violations)
    return view.render(
        "validate.html",
        text=text,
        example=EXAMPLE,
        checked=True,
        problems=problems,
        graph=graph,
        order=order,
    )


def _back_to_workflow(view: View) -> str:
    return f"/workflows/{view.param('workflow_id')}"


routes: list[BaseRoute] = [
    Route("/workflows", page(_list), methods=["GET"]),
    Route("/workflows/validate", page(_validate_form), methods=["GET"]),
    Route("/workflows/validate", action(_validate), methods=["POST"]),
    *_workflow_page.routes(),
    Route(
        "/workflows/{workflow_id}/run",
        action(_run, back=_back_to_workflow),
        methods=["POST"],
    ),
]
