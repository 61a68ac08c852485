"""The dashboard's overview (/): counts by state, tasks finished per minute,
queues, workers and recent failures, against a real server and demo worker,
scoped like the API (a member counts its own tasks only), and live."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Client, WorkerFactory, connect
from tests.e2e.workflow_helpers import MEMBER_PASSWORD, create_member
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess
from tests.support.web import LiveStream, signed_in

pytestmark = [pytest.mark.any_database, pytest.mark.server_env(ORCHESTRATOR_HTTP_PORT="0")]

CARD = re.compile(r'data-status="(\w*)">\s*<span class="count">(\d+)</span>')
BAR = re.compile(r"<title>\d\d:\d\d: (\d+) finished(?: \((\d+) failed\))?</title>")
EMPTY_STATE = "Nothing has run here yet"
NOTHING = {
    "": 0,
    "PENDING": 0,
    "QUEUED": 0,
    "RUNNING": 0,
    "SUCCEEDED": 0,
    "FAILED": 0,
    "CANCELLED": 0,
}


def cards(html: str) -> dict[str, int]:
    """The state cards' counts by status ("" is the card of all tasks)."""
    return {status: int(count) for status, count in CARD.findall(html)}


def finished(html: str) -> tuple[int, int]:
    """(finished, failed or cancelled) summed over the chart's bars."""
    bars = BAR.findall(html)
    assert len(bars) == 60 or not bars, f"{len(bars)} bars"
    return sum(int(total) for total, _ in bars), sum(int(bad or 0) for _, bad in bars)


async def test_the_overview_shows_the_work_done(
    orchestrator: ServerProcess, admin: Client, start_worker: WorkerFactory
) -> None:
    web = signed_in(orchestrator, ADMIN_USERNAME, ADMIN_PASSWORD)
    first = web.get("/")
    assert first.status == 200
    assert EMPTY_STATE in first.text and "orchestrator worker --demo" in first.text
    assert cards(first.text) == NOTHING
    assert "nothing finished in the last hour" in first.text

    await start_worker("--demo", "--slots", "4")
    succeeded = [await admin.create("echo", {"n": n}, start=True) for n in range(5)]
    failed = await admin.create(
        "fail",
        {"message": "<script>alert(1)</script> broke"},
        title="<b>fails</b>",
        start=True,
        max_attempts=1,
    )
    for task in [*succeeded, failed]:
        await admin.watch(task.id)
    await admin.create("echo", {"n": "not started"})
    await admin.create("nobody-serves-this", {}, start=True)

    page = web.get("/")
    assert cards(page.text) == NOTHING | {
        "": 8,
        "PENDING": 1,
        "QUEUED": 1,
        "SUCCEEDED": 5,
        "FAILED": 1,
    }
    assert 'href="/tasks?status=FAILED"' in page.text
    assert finished(page.text) == (6, 1)
    assert EMPTY_STATE not in page.text
    # The queue no worker serves, with what to do about it.
    assert re.search(r'data-type="nobody-serves-this" data-queued="1"', page.text)
    assert "No workers serve type <code>nobody-serves-this</code>" in page.text
    assert page.text.count("data-worker-id=") == 1
    # The failure links to its task; its title and error are text, not markup.
    assert f'href="/tasks/{failed.id}"' in page.text
    assert "&lt;b&gt;fails&lt;/b&gt;" in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; broke" in page.text
    assert "<script>alert" not in page.text and "<b>fails" not in page.text


async def test_a_members_overview_counts_only_its_own_tasks(
    orchestrator: ServerProcess, admin: Client
) -> None:
    await create_member(admin, "overview-member")
    async with connect(orchestrator, "overview-member", MEMBER_PASSWORD) as member:
        await member.create("echo", {})
        await member.create("echo", {}, start=True)
    for _ in range(3):
        await admin.create("echo", {})
    await admin.create("admins-own-type", {}, start=True)

    seen = signed_in(orchestrator, "overview-member", MEMBER_PASSWORD).get("/").text
    assert cards(seen) == NOTHING | {"": 2, "PENDING": 1, "QUEUED": 1}
    assert "admins-own-type" not in seen
    # Its queued echo waits for a worker: the demo worker serves that type.
    assert re.search(r"No workers serve type <code>echo</code>: start one with\s*<code>", seen)
    assert "orchestrator worker --demo" in seen

    everyone = signed_in(orchestrator, ADMIN_USERNAME, ADMIN_PASSWORD).get("/").text
    assert cards(everyone) == NOTHING | {"": 6, "PENDING": 4, "QUEUED": 2}


async def test_a_member_sees_an_admins_worker_but_not_what_it_runs_for_others(
    orchestrator: ServerProcess, admin: Client, start_worker: WorkerFactory
) -> None:
    await start_worker("--demo", "--slots", "3", "--name", "shared-worker")
    running = await admin.create("sleep", {"seconds": 30}, start=True)
    try:
        watched = signed_in(orchestrator, ADMIN_USERNAME, ADMIN_PASSWORD)
        deadline = time.monotonic() + 30
        while "1 / 3" not in watched.get("/workers").text:
            assert time.monotonic() < deadline, "the admin never saw its task in hand"
            await asyncio.sleep(0.05)
        await create_member(admin, "curious-member")
        async with connect(orchestrator, "curious-member", MEMBER_PASSWORD) as member:
            # Its own, so the overview's queues list the type and who serves it.
            own = await member.create("sleep", {"seconds": 30}, start=True)
            seen = signed_in(orchestrator, "curious-member", MEMBER_PASSWORD)
            workers = seen.get("/workers").text
            assert "shared-worker" in workers and "3 slots" in workers
            assert " / 3" not in workers and running.id[:8] not in workers
            overview = seen.get("/").text
            assert ">sleep</a></td>" in overview, overview
            assert "free slot" not in overview and " / 3" not in overview
            await member.cancel(own.id)
    finally:
        await admin.cancel(running.id)


def follow(live: LiveStream, wanted: dict[str, Callable[[str], bool]], timeout: float = 30) -> None:
    """Reads region updates until the latest HTML of each region in `wanted`
    satisfies its check (a region is sent only when it changed, in any order)."""
    deadline = time.monotonic() + timeout
    latest: dict[str, str] = {}
    while not all(region in latest and ok(latest[region]) for region, ok in wanted.items()):
        event = live.next_event(max(0.01, deadline - time.monotonic()))
        if event.name == "region":
            region, html = event.region()
            latest[region] = html


async def test_the_overview_follows_changes_live(
    orchestrator: ServerProcess, admin: Client, start_worker: WorkerFactory
) -> None:
    web = signed_in(orchestrator, ADMIN_USERNAME, ADMIN_PASSWORD)
    page = web.get("/")
    assert 'data-live="/live/"' in page.text
    with web.live("/live/") as live:
        assert cards(live.next_region("overview-counts")) == NOTHING
        await start_worker("--demo")
        task = await admin.create("echo", {"live": True}, start=True)
        await admin.watch(task.id)

        follow(
            live,
            {
                "overview-counts": lambda html: cards(html).get("SUCCEEDED") == 1,
                "overview-chart": lambda html: finished(html) == (1, 0),
                "overview-workers": lambda html: "data-worker-id=" in html,
                # The first steps are gone once something has run.
                "overview-start": lambda html: EMPTY_STATE not in html,
            },
        )
