"""Server-sent events for live pages.

A live page's regions are rendered again when what they show changed, and
only the regions whose HTML differs from what the browser has are sent. The
engine's change feed says when: one task's or run's changes for a page of
it, any change for a page of many. Renders are spaced by the page's `every`,
so a task reporting progress a hundred times a second costs a few renders,
and an idle page costs nothing but a keep-alive comment.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.responses import Response, StreamingResponse

from orchestrator.errors import NotFound
from orchestrator.web.readings import scope
from orchestrator.web.routing import signed_in

if TYPE_CHECKING:
    from orchestrator.web.routing import LivePage
    from orchestrator.web.view import View

# Proxies and browsers drop a silent connection; a comment this often keeps
# it, and tells the server a browser that left (the write fails).
KEEP_ALIVE_SECONDS = 15.0
REGION_PREFIX = "live_"


async def stream(view: View, live_page: LivePage) -> Response:
    return StreamingResponse(
        _events(view, live_page),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no"},
    )


async def _events(view: View, live_page: LivePage) -> AsyncIterator[str]:
    feed = view.engine.changes
    template = view.dashboard.templates.get_template(live_page.template)
    regions = [name for name in template.blocks if name.startswith(REGION_PREFIX)]
    key = live_page.key(view)
    sent: dict[str, str] = {}
    yield "retry: 2000\n\n"
    read_key = (scope(view.caller), str(view.request.url))
    while not feed.closed:
        # A page of one task or run waits for its keys; one of many, for anything.
        watched = [key] if key else []
        changed = feed.waiter(*watched)
        version = feed.version
        try:
            # Every render asks again whether the session still works: logout
            # or a disabled user ends the stream at the next change.
            if await signed_in(view.request) is None:
                yield "event: gone\ndata: {}\n\n"
                return
            try:
                values, read_at = await live_page.shared.read(
                    read_key, version, lambda: live_page.context(view)
                )
            except NotFound:
                # Deleted, or never the caller's: the page says so when reloaded.
                yield "event: missing\ndata: {}\n\n"
                return
            if watched:
                # What the read showed may name more to follow (a run's
                # selected node's task, whose log lines make no run event).
                watched += live_page.follow(values)
                feed.also(changed, watched[1:])
            context = template.new_context(view.context(**values))
            for name in regions:
                html = "".join(template.blocks[name](context))
                region_id = name.removeprefix(REGION_PREFIX).replace("_", "-")
                # The first pass is sent too: something may have changed since
                # the browser got the page.
                if sent.get(region_id) != html:
                    yield _region(region_id, html)
                    sent[region_id] = html
            # A read shared with another stream may predate the change this
            # one was woken for: render again soon rather than wait for another.
            while read_at >= version and not changed.is_set():
                try:
                    await asyncio.wait_for(changed.wait(), KEEP_ALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
        finally:
            if watched:
                feed.forget(changed, watched)
        await asyncio.sleep(live_page.every)


def _region(region_id: str, html: str) -> str:
    data = json.dumps({"id": region_id, "html": html})
    return f"event: region\ndata: {data}\n\n"
