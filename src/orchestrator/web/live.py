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
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from orchestrator.errors import NotFound
from orchestrator.web.caller import dashboard_of, signed_in
from orchestrator.web.readings import scope
from orchestrator.web.view import View

if TYPE_CHECKING:
    from orchestrator.web.routing import LivePage

# Proxies and browsers drop a silent connection; a comment this often keeps
# it, tells the server a browser that left (the write fails), and checks the
# session of a page nothing changed on.
KEEP_ALIVE_SECONDS = 15.0
REGION_PREFIX = "live_"
# Live pages one login session may hold open at once: a browser's tabs, not
# a loop opening streams until the server tires.
MAX_STREAMS_PER_SESSION = 64
GONE = "event: gone\ndata: {}\n\n"

log = logging.getLogger(__name__)
_open: Counter[str] = Counter()


async def endpoint(request: Request, live_page: LivePage) -> Response:
    caller = await signed_in(request)
    if caller is None:
        # An event stream still: a redirect to the sign-in form would make
        # the browser give up on the stream with the page left stale.
        return _event_stream(_once(GONE))
    session = caller.session_id or caller.user_id
    if _open[session] >= MAX_STREAMS_PER_SESSION:
        return PlainTextResponse("too many live pages open in this session", 429)
    view = View(request, caller, dashboard_of(request))
    return _event_stream(_followed(session, _Stream(view, live_page)))


def _event_stream(events: AsyncIterator[str]) -> Response:
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
    )


async def _once(event: str) -> AsyncIterator[str]:
    yield event


async def _followed(session: str, stream: _Stream) -> AsyncIterator[str]:
    """The stream's events, counted against its session while it is open."""
    _open[session] += 1
    # Logout, a revoked session or a disabled user, here or on another
    # replica, ends the stream at once, as it ends the session's gRPC streams.
    release = stream.view.dashboard.credentials.hold(stream.view.caller, stream.ended.set)
    try:
        async for event in stream.events():
            yield event
    finally:
        release()
        _open[session] -= 1
        if not _open[session]:
            del _open[session]


class _Stream:
    def __init__(self, view: View, live_page: LivePage) -> None:
        self.view = view
        self.page = live_page
        self.template = view.dashboard.templates.get_template(live_page.template)
        self.regions = [n for n in self.template.blocks if n.startswith(REGION_PREFIX)]
        # What the browser has, by region id.
        self.sent: dict[str, str] = {}
        self.ended = asyncio.Event()

    async def events(self) -> AsyncIterator[str]:
        view, feed = self.view, self.view.engine.changes
        key = self.page.key(view)
        read_key = (scope(view.caller), str(view.request.url))
        yield "retry: 2000\n\n"
        # Keys the last read named: followed from before the next read, so a
        # change while reading is not missed.
        followed: list[str] = []
        while not feed.closed:
            # A page of one task or run waits for its keys; one of many, for anything.
            watched = [key, *followed] if key else []
            changed = feed.waiter(*watched)
            version = feed.version
            rendered_at = time.monotonic()
            try:
                # Every render asks again whether the session still works.
                if self.ended.is_set() or await signed_in(view.request) is None:
                    yield GONE
                    return
                try:
                    values, read_at = await self.page.shared.read(
                        read_key, version, lambda: self.page.context(view)
                    )
                except NotFound:
                    # Deleted, or never the caller's: the page says so when reloaded.
                    yield "event: missing\ndata: {}\n\n"
                    return
                if watched:
                    # What the read showed may name more to follow (a run's
                    # selected node's task, whose log lines make no run event).
                    new = [k for k in self.page.follow(values) if k not in watched]
                    feed.also(changed, new)
                    watched += new
                    followed = watched[1:]
                first = not self.sent
                for region_id, html in self._render(values):
                    yield _region(region_id, html)
                if first:
                    # The page is now as current as the server: what a person
                    # (or a test) does on it from here is not undone by a region
                    # the stream was still bringing up to date.
                    yield "event: synced\ndata: {}\n\n"
                # A read shared with another stream may predate the change this
                # one was woken for: render again soon rather than wait for another.
                while read_at >= version and not changed.is_set():
                    try:
                        async with asyncio.timeout(KEEP_ALIVE_SECONDS):
                            await _either(changed, self.ended)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                    if self.ended.is_set():
                        yield GONE
                        return
            except Exception:
                # A bug: logged, and the page told to stop following rather
                # than reconnect into the same failure every two seconds.
                log.exception("live page failed", extra={"path": view.request.url.path})
                yield "event: broken\ndata: {}\n\n"
                return
            finally:
                if watched:
                    feed.forget(changed, watched)
            # Spaced by `every` from the last render, not from the change: a
            # quiet page shows a change at once.
            await asyncio.sleep(max(0.0, self.page.every - (time.monotonic() - rendered_at)))

    def _render(self, values: dict[str, Any]) -> list[tuple[str, str]]:
        """The regions whose HTML changed; the first pass sends them all (the
        page may have changed since the browser got it)."""
        context = self.template.new_context(self.view.context(**values))
        changed = []
        for name in self.regions:
            html = "".join(self.template.blocks[name](context))
            region_id = name.removeprefix(REGION_PREFIX).replace("_", "-")
            if self.sent.get(region_id) != html:
                changed.append((region_id, html))
                self.sent[region_id] = html
        return changed


async def _either(one: asyncio.Event, other: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(one.wait()), asyncio.ensure_future(other.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _region(region_id: str, html: str) -> str:
    data = json.dumps({"id": region_id, "html": html})
    return f"event: region\ndata: {data}\n\n"
