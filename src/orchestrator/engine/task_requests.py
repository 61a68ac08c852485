"""Tasks as people ask for them in words rather than in a request message: a
label filter written `key=value`, and a task asked for once more."""

from __future__ import annotations

from orchestrator.errors import InvalidArgument
from orchestrator.model import NewTask, Task


def label_filter(text: str) -> tuple[str, str] | None:
    """`key=value` as a label filter; empty text filters nothing."""
    if not text:
        return None
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidArgument.field("label", "must be key=value")
    return key, value


def again(task: Task) -> NewTask:
    """A new task doing what `task` was asked to do, queued at once.

    Its limits come along (the same work needs the same room), its start
    time does not (it is in the past, or the reason to run it again is to
    run it now), nor its idempotency key (that would answer with `task`
    itself). A workflow node's task comes back as a task of its own: the
    run has moved on."""
    return NewTask(
        title=task.title,
        type=task.type,
        input=task.input,
        start=True,
        description=task.description,
        labels=dict(task.labels),
        priority=task.priority,
        max_attempts=task.max_attempts,
        timeout_seconds=task.timeout_seconds,
        concurrency=task.concurrency,
        rate_limit=task.rate_limit,
    )
