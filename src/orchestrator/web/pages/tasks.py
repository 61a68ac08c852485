"""/tasks: the caller's tasks, filtered and paged, live; and a form to create
one. A task's own page is in task.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from orchestrator.engine.task_requests import label_filter
from orchestrator.engine.tasks import TaskFilter
from orchestrator.errors import FieldViolation, InvalidArgument
from orchestrator.model import NewTask, Task, TaskStatus
from orchestrator.web.forms import json_object
from orchestrator.web.pages import task
from orchestrator.web.routing import LivePage, action
from orchestrator.web.view import View

PAGE_SIZE = 50
# What a person calls the filters the engine names.
FILTER_NAMES = {"status": "State", "label": "Label", "page_token": "Page"}


@dataclass(frozen=True)
class Filters:
    """The list's query, as given: shown back in the form and carried by
    its page links."""

    status: str = ""
    type: str = ""
    label: str = ""
    q: str = ""
    page: str = ""

    @classmethod
    def of(cls, view: View) -> Filters:
        return cls(
            status=view.query("status").upper(),
            type=view.query("type"),
            label=view.query("label"),
            q=view.query("q"),
            page=view.query("page"),
        )

    @property
    def narrowed(self) -> bool:
        return bool(self.status or self.type or self.label or self.q)

    @property
    def active(self) -> list[tuple[str, str]]:
        given = (("state", self.status), ("type", self.type), ("label", self.label))
        return [(name, value) for name, value in (*given, ("title has", self.q)) if value]

    def url(self, page: str = "") -> str:
        given = {
            "status": self.status,
            "type": self.type,
            "label": self.label,
            "q": self.q,
            "page": page,
        }
        query = urlencode({name: value for name, value in given.items() if value})
        return "/tasks" + (f"?{query}" if query else "")

    def where(self) -> TaskFilter:
        """The engine's filter; every problem with the values at once."""
        problems: list[FieldViolation] = []
        status = None
        if self.status:
            try:
                status = TaskStatus(self.status)
            except ValueError:
                states = ", ".join(TaskStatus)
                problems.append(
                    FieldViolation("status", f"{self.status} is not a task state ({states})")
                )
        label = None
        try:
            label = label_filter(self.label)
        except InvalidArgument as invalid:
            problems += invalid.violations
        if problems:
            raise InvalidArgument(violations=problems)
        return TaskFilter(status, self.type or None, label, self.q or None)


@dataclass(frozen=True)
class NewTaskForm:
    """The "New task" form as last sent, kept when it is refused."""

    type: str = ""
    title: str = ""
    input: str = '{\n  "hello": "world"\n}'
    start: bool = True
    problems: tuple[FieldViolation, ...] = field(default=())

    def problem(self, name: str) -> str:
        return "; ".join(p.description for p in self.problems if p.field == name)


async def _list(view: View) -> dict[str, Any]:
    filters = Filters.of(view)
    found: list[Task] = []
    next_page = ""
    problems: tuple[FieldViolation, ...] = ()
    try:
        found, next_page = await view.engine.tasks.list(
            view.caller, filters.where(), PAGE_SIZE, filters.page
        )
    except InvalidArgument as invalid:
        problems = invalid.violations
    served = {t for w in view.dashboard.status.workers_for(view.caller) for t in w.task_types}
    return {
        "filters": filters,
        "tasks": found,
        "problems": [(FILTER_NAMES.get(p.field, p.field), p.description) for p in problems],
        "next_url": filters.url(next_page) if next_page else None,
        "first_url": filters.url() if filters.page else None,
        "statuses": list(TaskStatus),
        "served_types": sorted(served),
        "elapsed": task.elapsed,
        "new": NewTaskForm(),
    }


async def _create(view: View) -> Response:
    form = await view.form()
    sent = NewTaskForm(
        type=str(form.get("type") or "").strip(),
        title=str(form.get("title") or "").strip(),
        input=str(form.get("input") or ""),
        start=form.get("start") == "on",
    )
    try:
        new = NewTask(
            title=sent.title or sent.type,
            type=sent.type,
            input=json_object(sent.input, "input"),
            start=sent.start,
            max_attempts=view.dashboard.default_max_attempts,
        )
        created = await view.engine.tasks.create(view.caller, new)
    except InvalidArgument as invalid:
        problems = list(invalid.violations) or [FieldViolation("", invalid.message)]
    else:
        done = "queued" if created.status is TaskStatus.QUEUED else "created (not started)"
        return view.redirect(f"/tasks/{created.id}", ok=f"Task {done}.")
    # The form was sent to the list's own address: shown again, it is the
    # same list, filters and all, still live.
    values = await _list(view)
    values["new"] = NewTaskForm(sent.type, sent.title, sent.input, sent.start, tuple(problems))
    filters: Filters = values["filters"]
    return view.render("tasks.html", 400, live_url="/live" + filters.url(filters.page), **values)


routes = [
    *LivePage("/tasks", "tasks.html", _list).routes(),
    Route("/tasks", action(_create), methods=["POST"]),
    *task.routes,
]
