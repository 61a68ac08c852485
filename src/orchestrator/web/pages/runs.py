"""/runs: workflow runs, overall or of one workflow, and a run's page: its
graph with each node coloured by state, a timeline of its nodes, and the task
behind a clicked node; all live."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from orchestrator.errors import InvalidArgument, NotFound
from orchestrator.model import (
    Definition,
    NodeRun,
    NodeSpec,
    RunStatus,
    Task,
    TaskEvent,
    TaskEventType,
    Workflow,
    WorkflowRun,
)
from orchestrator.web.charts import GanttRow, gantt
from orchestrator.web.graph import workflow_svg
from orchestrator.web.routing import LivePage, action
from orchestrator.web.view import View

PAGE_SIZE = 50
# Workflows offered by the list's filter: the newest; one named in the address is added.
FILTER_CHOICES = 100
LOG_LINES = 50


# -- the list --------------------------------------------------------------------


def _status(text: str) -> RunStatus | None:
    """A status from the address; anything else means all of them."""
    return RunStatus.__members__.get(text.upper())


async def _runs_context(view: View) -> dict[str, Any]:
    workflows = view.engine.workflows
    workflow_id = view.query("workflow")
    status = _status(view.query("status"))
    token = view.query("page")
    # Another user's workflow is the not-found page, as its own page is.
    workflow = await workflows.get(view.caller, workflow_id) if workflow_id else None
    try:
        runs, next_token = await workflows.list_runs(
            view.caller, workflow_id or None, status, PAGE_SIZE, token
        )
    except InvalidArgument:
        # A page link from an older server, or typed by hand: the first page.
        token = ""
        runs, next_token = await workflows.list_runs(
            view.caller, workflow_id or None, status, PAGE_SIZE, token
        )
    choices, _ = await workflows.list_workflows(view.caller, FILTER_CHOICES, "")
    if workflow is not None and all(w.id != workflow.id for w in choices):
        choices.append(workflow)
    names = {w.id: w.name for w in choices}
    # Workflows older than the choices are looked up; a deleted one shows as its id.
    found = await workflow_names(view, {run.workflow_id for run in runs} - names.keys())
    names |= {workflow_id: name or workflow_id for workflow_id, name in found.items()}
    return {
        "runs": runs,
        "names": names,
        "choices": choices,
        "workflow": workflow,
        "state": status.value if status else "",
        "statuses": [s.value for s in RunStatus],
        "page_token": token,
        "next_token": next_token,
    }


async def workflow_names(view: View, workflow_ids: Iterable[str]) -> dict[str, str | None]:
    """Each workflow's name, None for one deleted since its runs; one read per
    workflow, however many runs name it."""
    names: dict[str, str | None] = {}
    for workflow_id in set(workflow_ids):
        try:
            names[workflow_id] = (await view.engine.workflows.get(view.caller, workflow_id)).name
        except NotFound:
            names[workflow_id] = None
    return names


# -- one run ---------------------------------------------------------------------


@dataclass(frozen=True)
class NodeDetail:
    """What the run page shows of the node asked for with `?node=ID`."""

    node_id: str
    spec: NodeSpec | None
    run: NodeRun | None
    task: Task | None
    logs: list[TaskEvent]


def _in_definition_order(run: WorkflowRun, definition: Definition) -> list[NodeRun]:
    place = {node.id: index for index, node in enumerate(definition.nodes)}
    return sorted(run.nodes, key=lambda n: place.get(n.node_id, len(place)))


def _gantt_rows(nodes: list[NodeRun]) -> list[GanttRow]:
    """Nodes by when they started, the ones not started last (in the given
    order: sorting is stable)."""
    far = datetime.max.replace(tzinfo=UTC)
    ordered = sorted(nodes, key=lambda n: n.started_at or far)
    return [GanttRow(n.node_id, n.status.value, n.started_at, n.finished_at) for n in ordered]


async def _node_detail(
    view: View, run: WorkflowRun, definition: Definition, node_id: str
) -> NodeDetail:
    spec = next((n for n in definition.nodes if n.id == node_id), None)
    node = next((n for n in run.nodes if n.node_id == node_id), None)
    task = None
    logs: list[TaskEvent] = []
    if node is not None and node.task_id:
        try:
            task = await view.engine.tasks.get(view.caller, node.task_id)
            logs = await view.engine.tasks.history(
                view.caller, node.task_id, LOG_LINES, types={TaskEventType.LOG}
            )
        except NotFound:
            # Its task was deleted (retention) while the run stays.
            pass
    return NodeDetail(node_id, spec, node, task, logs)


async def _run_context(view: View) -> dict[str, Any]:
    workflows = view.engine.workflows
    run = await workflows.get_run(view.caller, view.param("run_id"))
    workflow: Workflow = await workflows.get(view.caller, run.workflow_id, run.version)
    nodes = _in_definition_order(run, workflow.definition)
    states = {node.node_id: node.status for node in nodes}
    selected = view.query("node")

    def link(node_id: str) -> str:
        return f"/runs/{quote(run.id, safe='')}?node={quote(node_id, safe='')}"

    return {
        "run": run,
        "workflow": workflow,
        "types": {node.id: node.type for node in workflow.definition.nodes},
        "graph": workflow_svg(workflow.definition, states, link, selected=selected or None),
        "nodes": nodes,
        "timeline": gantt(_gantt_rows(nodes), datetime.now(UTC)),
        "detail": await _node_detail(view, run, workflow.definition, selected)
        if selected
        else None,
    }


def _selected_task(values: dict[str, Any]) -> list[str]:
    """The selected node's task: its log lines change no run."""
    detail: NodeDetail | None = values["detail"]
    return [detail.task.id] if detail is not None and detail.task is not None else []


async def _cancel(view: View) -> Response:
    run_id = view.param("run_id")
    await view.engine.workflows.cancel_run(view.caller, run_id, "cancelled in the dashboard")
    return view.redirect(f"/runs/{quote(run_id, safe='')}", ok="Run cancelled.")


def _back_to_run(view: View) -> str:
    return f"/runs/{quote(view.param('run_id'), safe='')}"


routes: list[BaseRoute] = [
    *LivePage("/runs", "runs.html", _runs_context).routes(),
    *LivePage(
        "/runs/{run_id}",
        "run.html",
        _run_context,
        key=lambda view: view.param("run_id"),
        follow=_selected_task,
        # A run's events come in bursts (a node ends, the next starts): a
        # quarter second shows each step without a render per event.
        every=0.25,
    ).routes(),
    Route("/runs/{run_id}/cancel", action(_cancel, back=_back_to_run), methods=["POST"]),
]
