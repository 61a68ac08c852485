"""A browser's part in the dashboard, over plain HTTP: sign in through the
form, keep the cookies, post forms with the page's CSRF token, and read a
live page's server-sent events with a deadline.

    web = WebClient(dashboard_url(server))
    web.sign_in("admin", ADMIN_PASSWORD)
    page = web.get("/tasks")                 # .status, .text, .headers
    web.post("/tasks/ID/cancel", {})         # the csrf_token of the last page is added
    with web.live("/live/tasks/ID") as live:
        region = live.next_region("task-status", timeout=10)
"""

from __future__ import annotations

import html
import http.client
import json
import re
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message

from tests.support.server import ServerProcess

DASHBOARD_URL = re.compile(r"dashboard on (https?://127\.0\.0\.1:\d+)/")
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')
TIMEOUT = 30.0


def dashboard_url(server: ServerProcess) -> str:
    """The dashboard's base URL (the server runs with ORCHESTRATOR_HTTP_PORT=0)."""
    return server.wait_for_log(DASHBOARD_URL).group(1)


def signed_in(server: ServerProcess, username: str, password: str) -> WebClient:
    web = WebClient(dashboard_url(server))
    web.sign_in(username, password)
    return web


def region(page: Page | str, element_id: str) -> str:
    """The HTML inside the element with this id."""
    text = page if isinstance(page, str) else page.text
    start = re.search(rf'<(\w+)\b[^>]*\bid="{element_id}"[^>]*>', text)
    assert start, f"no #{element_id} on the page:\n{text[:3000]}"
    depth = 1
    for tag in re.compile(rf"<(/?){start.group(1)}\b[^>]*>").finditer(text, start.end()):
        depth += -1 if tag.group(1) else 1
        if depth == 0:
            return text[start.end() : tag.start()]
    raise AssertionError(f"#{element_id} is never closed")


def flash(page: Page) -> str:
    """The page's message, as "ok: text" or "error: text"."""
    found = re.search(r'<p class="flash (ok|error)"[^>]*>(.*?)</p>', page.text, re.S)
    assert found, f"no flash message on the page:\n{page.text[:3000]}"
    return f"{found.group(1)}: {html.unescape(found.group(2))}"


def followed(web: WebClient, reply: Page) -> Page:
    """The page a form's redirect leads to."""
    assert reply.status == 303, f"{reply.status}:\n{reply.text[:2000]}"
    return web.get(reply.location)


@dataclass
class Page:
    status: int
    text: str
    headers: Message
    location: str = ""

    def csrf(self) -> str:
        match = CSRF.search(self.text)
        assert match, f"no csrf_token on the page:\n{self.text[:2000]}"
        return match.group(1)


@dataclass
class WebClient:
    base: str
    cookies: dict[str, str] = field(default_factory=dict)
    last: Page | None = None

    def _connection(self) -> http.client.HTTPConnection:
        url = urllib.parse.urlsplit(self.base)
        assert url.hostname and url.port
        return http.client.HTTPConnection(url.hostname, url.port, timeout=TIMEOUT)

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def _keep_cookies(self, headers: Message) -> None:
        for header in headers.get_all("set-cookie") or []:
            pair, _, attributes = header.partition(";")
            name, _, value = pair.strip().partition("=")
            if "max-age=0" in attributes.lower() or value in ("", '""'):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def request(
        self,
        method: str,
        path: str,
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Page:
        connection = self._connection()
        try:
            connection.request(method, path, body=body, headers=self._headers(headers))
            reply = connection.getresponse()
            page = Page(
                reply.status,
                reply.read().decode(),
                reply.headers,
                reply.headers.get("location") or "",
            )
        finally:
            connection.close()
        self._keep_cookies(page.headers)
        if method == "GET" and page.status == 200:
            self.last = page
        return page

    def get(self, path: str) -> Page:
        return self.request("GET", path)

    def post(self, path: str, fields: Mapping[str, str], *, csrf: str | None = "page") -> Page:
        """Posts a form; `csrf="page"` adds the token of the last page fetched,
        None sends none, any other value is sent as it is."""
        form = dict(fields)
        if csrf == "page":
            assert self.last is not None, "fetch a page before posting its form"
            form["csrf_token"] = self.last.csrf()
        elif csrf is not None:
            form["csrf_token"] = csrf
        return self.request(
            "POST",
            path,
            urllib.parse.urlencode(form),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )

    def sign_in(self, username: str, password: str) -> Page:
        self.get("/login")
        reply = self.post("/login", {"username": username, "password": password})
        assert reply.status == 303, f"sign-in answered {reply.status}:\n{reply.text[:2000]}"
        assert "orchestrator_session" in self.cookies
        return reply

    @contextmanager
    def live(self, path: str) -> Iterator[LiveStream]:
        connection = self._connection()
        try:
            connection.request("GET", path, headers=self._headers({"Accept": "text/event-stream"}))
            reply = connection.getresponse()
            assert reply.status == 200, f"{path} answered {reply.status}"
            yield LiveStream(connection, reply)
        finally:
            connection.close()


@dataclass(frozen=True)
class Event:
    name: str
    data: str

    def region(self) -> tuple[str, str]:
        parsed = json.loads(self.data)
        return parsed["id"], parsed["html"]


class LiveStream:
    def __init__(
        self, connection: http.client.HTTPConnection, reply: http.client.HTTPResponse
    ) -> None:
        self._connection = connection
        self._reply = reply

    def next_event(self, timeout: float = TIMEOUT) -> Event:
        """The next event (comments and `synced`, which only tells the page
        it is current, skipped); fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        name, data = "message", []
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no event before the deadline"
            assert self._connection.sock is not None
            # A read past the deadline raises TimeoutError: the test fails there.
            self._connection.sock.settimeout(remaining)
            line = self._reply.readline().decode().rstrip("\r\n")
            if line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data.append(line.removeprefix("data:").strip())
            elif line == "" and name == "synced":
                name, data = "message", []
            elif line == "" and data:
                return Event(name, "\n".join(data))
            elif line == "" and name != "message":
                return Event(name, "")

    def next_region(self, region_id: str, timeout: float = TIMEOUT, contains: str = "") -> str:
        """The HTML of the next update of `region_id` (holding `contains`)."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.01, deadline - time.monotonic()))
            if event.name == "region":
                found, html = event.region()
                if found == region_id and contains in html:
                    return html
