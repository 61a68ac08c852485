"""ListTasks over a whole store (DESIGN §4): keyset pages, newest first,
stable under inserts, and filters. Its own server: it counts every task."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.proto import tasks_pb2
from tests.e2e.conftest import (
    Client,
)

PENDING = tasks_pb2.TASK_STATUS_PENDING
QUEUED = tasks_pb2.TASK_STATUS_QUEUED
RUNNING = tasks_pb2.TASK_STATUS_RUNNING
CANCELLED = tasks_pb2.TASK_STATUS_CANCELLED


async def test_list_pages_newest_first_and_filters(admin: Client) -> None:
    created: list[tasks_pb2.Task] = []
    for index in range(25):
        created.append(
            await admin.create(
                "alpha" if index % 2 == 0 else "beta",
                {"index": index},
                labels={"batch": "one" if index % 5 == 0 else "two"},
                start=index % 3 == 0,
            )
        )
    newest_first = [t.id for t in reversed(created)]

    pages: list[list[str]] = []
    token = ""
    for round_ in range(3):
        page = await admin.list(page_size=10, page_token=token)
        pages.append([t.id for t in page.tasks])
        token = page.next_page_token
        # Newer tasks arriving between fetches must not shift the pages to come.
        await admin.create("alpha", {"inserted_after_page": round_})
    assert token == ""
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [i for p in pages for i in p] == newest_first
    assert len(await admin.list_ids()) == 28

    def ids(where: Callable[[tasks_pb2.Task], bool]) -> list[str]:
        return [t.id for t in reversed(created) if where(t)]

    queued = await admin.list(status=QUEUED)
    assert [t.id for t in queued.tasks] == ids(lambda t: t.status == QUEUED)
    assert len(queued.tasks) == 9
    pending = await admin.list(status=PENDING, page_size=100)
    assert len(pending.tasks) == 16 + 3
    beta = await admin.list(type="beta")
    assert [t.id for t in beta.tasks] == ids(lambda t: t.type == "beta")
    batch_one = await admin.list(label="batch=one")
    assert [t.id for t in batch_one.tasks] == ids(lambda t: t.labels["batch"] == "one")
    assert len(batch_one.tasks) == 5
    both = await admin.list(type="alpha", label="batch=one", status=QUEUED)
    assert [t.id for t in both.tasks] == [created[0].id]  # even, a multiple of 5 and of 3
    assert (await admin.list(label="batch=three")).tasks == []
    assert (await admin.list(type="gamma")).tasks == []

    # Filters page too.
    first = await admin.list(type="beta", page_size=5)
    second = await admin.list(type="beta", page_size=5, page_token=first.next_page_token)
    assert [t.id for t in [*first.tasks, *second.tasks]] == ids(lambda t: t.type == "beta")[:10]
