"""/workflows: the caller's workflows, a definition drawn as its graph with a
form that starts a run, and checking a pasted definition by the engine's own
rules."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from markupsafe import Markup
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from orchestrator.client import definition_from_dict, parse_workflow
from orchestrator.engine.graph import MAX_EDGES, MAX_NODES
from orchestrator.engine.workflows import WorkflowEngine
from orchestrator.errors import FieldViolation, InvalidArgument, NotFound
from orchestrator.model import Definition
from orchestrator.web.forms import json_object
from orchestrator.web.graph import workflow_svg
from orchestrator.web.routing import LivePage, action, page
from orchestrator.web.view import View

PAGE_SIZE = 50
RECENT_RUNS = 10
# Room for the engine's limits, 1000 nodes and 5000 edges, written
# compactly (`- {source: n12, target: n345}`): longer is refused unread.
MAX_PASTED = 192 * 1024
# The store keeps versions as 32-bit integers: a larger one cannot exist, and
# PostgreSQL refuses to be asked for it.
MAX_VERSION = 2**31 - 1
_VERSION = re.compile(r"[0-9]{1,10}")
# libyaml's loader where it is installed: the pure-Python one takes seconds
# over a long paste.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Pastes checked at once, each in a thread: a burst waits here rather than
# taking every thread the server has.
_CHECKING = asyncio.Semaphore(2)
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
    if not _VERSION.fullmatch(text) or not 1 <= int(text) <= MAX_VERSION:
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


async def _run(view: View) -> Response:
    form = await view.form()
    text = str(form.get("input") or "").strip()
    version = _version(str(form.get("version") or ""))
    try:
        run = await view.engine.workflows.start(
            view.caller, view.param("workflow_id"), version, json_object(text, "input")
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


def _where(mark: yaml.Mark | None) -> str:
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""


def _shares_a_node(root: yaml.Node) -> bool:
    """Whether a node is reached twice, which only an alias (`*name`) does:
    a few lines of them can stand for a value too large to walk, or one that
    contains itself. Looked for before anything is built from the nodes."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return True
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in node.value for part in pair)
    return False


def _first_alias(text: str) -> yaml.Mark | None:
    return next(
        (t.start_mark for t in yaml.scan(text, Loader=_LOADER) if isinstance(t, yaml.AliasToken)),
        None,
    )


def _read(text: str) -> Any:
    """The pasted text as plain JSON values; InvalidArgument naming where it
    cannot be read."""
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
        if root is not None and _shares_a_node(root):
            where = _where(_first_alias(text))
            raise InvalidArgument.field(
                "text", f"not valid YAML or JSON{where}: aliases (*name) are not accepted here"
            )
        data = None if root is None else loader.construct_document(root)
        # What the API can carry: YAML's dates and binary have no JSON form.
        return json.loads(json.dumps(data))
    except yaml.YAMLError as error:
        where = _where(getattr(error, "problem_mark", None))
        problem = getattr(error, "problem", None) or str(error)
        raise InvalidArgument.field("text", f"not valid YAML or JSON{where}: {problem}") from None
    except RecursionError:
        raise InvalidArgument.field("text", "nested too deeply to read") from None
    except (TypeError, ValueError) as error:
        raise InvalidArgument.field("text", f"{error}: quote it to make it a string") from None
    finally:
        loader.dispose()


def _parse(text: str) -> Definition:
    """A whole workflow file (as `orchestrator workflow create -f` reads it)
    or a bare definition, parsed as the CLI parses it, within the engine's
    limits on its size."""
    if len(text) > MAX_PASTED:
        raise InvalidArgument.field(
            "text", f"longer than {MAX_PASTED // 1024} KiB ({-(-len(text) // 1024)} KiB given)"
        )
    data = _read(text)
    if data is None:
        raise InvalidArgument.field("text", "is empty: paste a workflow in YAML or JSON")
    if isinstance(data, Mapping) and "definition" in data:
        definition = parse_workflow(data).definition
    else:
        definition = definition_from_dict(data)
    # Checked before drawing: thousands of nodes take seconds to draw, and
    # the engine refuses them whatever else is wrong.
    problems = [
        FieldViolation(f"definition.{name}", f"at most {limit} {name}, not {len(items)}")
        for name, items, limit in (
            ("nodes", definition.nodes, MAX_NODES),
            ("edges", definition.edges, MAX_EDGES),
        )
        if len(items) > limit
    ]
    if problems:
        raise InvalidArgument(violations=problems)
    return definition


@dataclass(frozen=True)
class _Checked:
    problems: list[FieldViolation]
    graph: Markup | None = None
    order: list[str] = field(default_factory=list)


def _check(text: str, workflows: WorkflowEngine) -> _Checked:
    """Parsed, validated and drawn in a thread: for a long paste that is
    a second of work, which the event loop must not wait for."""
    try:
        definition = _parse(text)
    except InvalidArgument as error:
        return _Checked(list(error.violations))
    # Drawn even when the engine finds problems: the picture helps find them.
    graph = workflow_svg(definition)
    try:
        return _Checked([], graph, workflows.validate(definition))
    except InvalidArgument as error:
        return _Checked(list(error.violations), graph)


def _validate_page(view: View, text: str, checked: _Checked | None) -> Response:
    return view.render(
        "validate.html",
        text=text,
        example=EXAMPLE,
        limits={"kib": MAX_PASTED // 1024, "nodes": MAX_NODES, "edges": MAX_EDGES},
        checked=checked is not None,
        problems=checked.problems if checked else [],
        graph=checked.graph if checked else None,
        order=checked.order if checked else [],
    )


async def _validate_form(view: View) -> Response:
    return _validate_page(view, "", None)


async def _validate(view: View) -> Response:
    text = str((await view.form()).get("definition") or "")
    async with _CHECKING:
        checked = await asyncio.to_thread(_check, text, view.engine.workflows)
    return _validate_page(view, text, checked)


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
