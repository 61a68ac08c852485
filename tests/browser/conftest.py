"""Fixtures for the dashboard's browser tests: one server per module with its
HTTP port open and a demo worker connected, a member account, the system's
Chromium driven by Playwright, and helpers to sign in, run the CLI and take
screenshots.

    async def test_x(page: Page, member: Account, member_cli: Cli) -> None:
        created = await member_cli("task", "create", "echo", "-o", "json")
        await sign_in(page, member.username, member.password)
        await page.goto(f"/tasks/{created.json()['id']}")

`page` has the dashboard as its base URL and fails its test if the page logs
an error (CSP violations are logged as errors) or throws: see PageProblems.
`open_page(**context_options)` opens more such pages, each with cookies of
its own (a phone's viewport, dark mode, a second user); `member_page` is one
signed in as the member already (one sign-in per module: `member_state`).
`member_client` is the SDK logged in as the member, quicker than the CLI for
setting a scene.

Playwright's objects belong to the event loop that made them and the browser
lives for the module, so this directory's tests, and the async fixtures here,
run in the module's loop (`loop_scope="module"`).

Chromium is the system's (/usr/bin/chromium, installed by scripts/browser):
Playwright cannot download its own browsers here.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Response,
    StorageState,
    async_playwright,
)

from orchestrator.client import Client
from tests.e2e import conftest as e2e
from tests.e2e.conftest import REPO, WorkerProcess, _serving, connect
from tests.e2e.test_cli_commands import Result, cli, login, user_env
from tests.e2e.workflow_helpers import MEMBER_PASSWORD, create_member
from tests.support.database import temporary_database
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess

CHROMIUM = "/usr/bin/chromium"
# Headless as root, and nothing that calls Google: the machine may have no way out.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Each run writes fresh ones here (not tracked); the README shows the copies
# in docs/screenshots, refreshed by copying these when the pages change.
SCREENSHOTS = REPO / "docs" / "screenshots" / "latest"
# Either line names the one HTTP listener; the dashboard's came after the metrics'.
HTTP_URL = re.compile(r"(?:dashboard|metrics) on (http://127\.0\.0\.1:\d+)/")
# Long enough for a loaded CI machine, short enough to fail inside the test timeout.
BROWSER_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Account:
    username: str
    password: str


ADMIN = Account(ADMIN_USERNAME, ADMIN_PASSWORD)

# pytest finds fixtures by name in this module: the e2e demo worker, here
# connected to this directory's `shared_orchestrator`.
demo_worker = e2e.demo_worker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    module_loop = pytest.mark.asyncio(loop_scope="module")
    for item in items:
        if pytest_asyncio.is_async_test(item) and item.path.is_relative_to(here):
            item.add_marker(module_loop, append=False)


# -- the server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_orchestrator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The module's server, with its HTTP listener on a free port. It takes
    the name of the e2e fixture so that `demo_worker` connects to it."""
    with (
        temporary_database(tmp_path_factory.mktemp("browser")) as url,
        _serving(url, {"ORCHESTRATOR_HTTP_PORT": "0"}) as process,
    ):
        yield process


@pytest.fixture(scope="module")
def dashboard_url(shared_orchestrator: ServerProcess) -> str:
    """http://127.0.0.1:PORT, without a trailing slash."""
    return shared_orchestrator.wait_for_log(HTTP_URL, timeout=30).group(1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def member(shared_orchestrator: ServerProcess) -> Account:
    """A member account made through the gRPC admin API."""
    username = f"member-{uuid.uuid4().hex[:8]}"
    async with connect(shared_orchestrator) as admin:
        await create_member(admin, username)
    return Account(username, MEMBER_PASSWORD)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def member_client(
    shared_orchestrator: ServerProcess, member: Account
) -> AsyncIterator[Client]:
    """The SDK, logged in as the member."""
    async with Client(shared_orchestrator.address) as client:
        await client.login(member.username, member.password)
        yield client


# -- the CLI ---------------------------------------------------------------------


@dataclass(frozen=True)
class Cli:
    """`orchestrator ARGS...` as one logged-in user, in a subprocess run off
    the event loop: `await member_cli("task", "create", "echo", "-o", "json")`."""

    env: Mapping[str, str]

    async def __call__(self, *args: str, stdin: str | None = None) -> Result:
        return await asyncio.to_thread(cli, *args, env=self.env, stdin=stdin)


def _logged_in(
    server: ServerProcess, account: Account, tmp_path_factory: pytest.TempPathFactory
) -> Cli:
    env = user_env(server, tmp_path_factory.mktemp(f"cli-{account.username}"))
    login(env, account.username, account.password)
    return Cli(env)


@pytest.fixture(scope="module")
def member_cli(
    shared_orchestrator: ServerProcess, member: Account, tmp_path_factory: pytest.TempPathFactory
) -> Cli:
    return _logged_in(shared_orchestrator, member, tmp_path_factory)


@pytest.fixture(scope="module")
def admin_cli(shared_orchestrator: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return _logged_in(shared_orchestrator, ADMIN, tmp_path_factory)


# -- the browser -----------------------------------------------------------------


class PageProblems:
    """What the dashboard must never cause: errors in the console (Chromium
    logs a CSP violation as one) and uncaught script errors.

    A document that answers with an error status (the 404 page a test asked
    for) logs "Failed to load resource" about itself: the test sees and
    asserts that status, so it is not a problem. Nor is /favicon.ico, which
    Chromium asks for on its own when a page names no icon. The same line
    about anything the page loads (a script, a stylesheet, an icon it
    names) is one."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self._documents: set[str] = set()

    def watch(self, page: Page) -> None:
        page.on("response", self._on_response)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.found.append(f"uncaught: {error}"))

    def _on_response(self, response: Response) -> None:
        if response.request.is_navigation_request() and response.status >= 400:
            self._documents.add(response.url)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        if message.text.startswith("Failed to load resource") and (
            url in self._documents or urlsplit(url).path == "/favicon.ico"
        ):
            return
        self.found.append(f"console error ({url or 'script'}): {message.text}")

    def take(self) -> list[str]:
        """The problems so far, forgetting them: for a test that causes one on purpose."""
        found, self.found = self.found, []
        return found

    def assert_none(self) -> None:
        assert not self.found, "the page had problems:\n" + "\n".join(self.found)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=list(CHROMIUM_ARGS), timeout=BROWSER_TIMEOUT_MS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def page_problems() -> PageProblems:
    return PageProblems()


async def _open(
    browser: Browser, dashboard_url: str, problems: PageProblems, options: Mapping[str, object]
) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(base_url=dashboard_url, **{"viewport": VIEWPORT, **options})
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = await context.new_page()
    problems.watch(page)
    return context, page


@pytest_asyncio.fixture(loop_scope="module")
async def page(
    request: pytest.FixtureRequest,
    browser: Browser,
    dashboard_url: str,
    demo_worker: WorkerProcess,
    shared_orchestrator: ServerProcess,
    page_problems: PageProblems,
) -> AsyncIterator[Page]:
    """A page in a fresh context (no cookies), 1280x800, whose relative URLs
    are the dashboard's. After the test: no problems, or the test errs."""
    context, page = await _open(browser, dashboard_url, page_problems, {})
    try:
        yield page
    finally:
        await context.close()
    report = getattr(request.node, "report_call", None)  # set by tests/conftest.py
    if report is not None and report.failed:
        print("--- server log (end):", *shared_orchestrator.lines[-60:], sep="\n")
    page_problems.assert_none()


OpenPage = Callable[..., Awaitable[Page]]


@pytest_asyncio.fixture(loop_scope="module")
async def open_page(
    browser: Browser, dashboard_url: str, page: Page, page_problems: PageProblems
) -> AsyncIterator[OpenPage]:
    """`await open_page(**context_options)`: another page like `page`, in a
    fresh context of its own (`viewport=PHONE`, `color_scheme="dark"`, ...);
    closed, and checked for problems, with `page`."""
    contexts: list[BrowserContext] = []

    async def open_(**options: object) -> Page:
        context, opened = await _open(browser, dashboard_url, page_problems, options)
        contexts.append(context)
        return opened

    try:
        yield open_
    finally:
        for context in contexts:
            await context.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def member_state(browser: Browser, dashboard_url: str, member: Account) -> StorageState:
    """The cookies of one sign-in as the member, for pages that start signed
    in: `await open_page(storage_state=member_state)`."""
    problems = PageProblems()
    context, page = await _open(browser, dashboard_url, problems, {})
    try:
        await sign_in(page, member.username, member.password)
        state = await context.storage_state()
    finally:
        await context.close()
    problems.assert_none()
    return state


@pytest_asyncio.fixture(loop_scope="module")
async def member_page(open_page: OpenPage, member_state: StorageState) -> Page:
    """A page like `page`, signed in as the member."""
    return await open_page(storage_state=member_state)


async def submit_sign_in(page: Page, username: str, password: str) -> Response | None:
    """Opens /login, fills its form and submits it; the response of the page
    the browser lands on (the sign-in page again when refused)."""
    await page.goto("/login")
    await page.locator('input[name="username"]').fill(username)
    await page.locator('input[name="password"]').fill(password)
    async with page.expect_navigation() as landed:
        await page.locator('input[name="password"]').press("Enter")
    return await landed.value


async def sign_in(page: Page, username: str, password: str) -> None:
    """Signs in through /login; AssertionError, with the page's flash
    message, if the browser is still on /login afterwards."""
    await submit_sign_in(page, username, password)
    if urlsplit(page.url).path == "/login":
        flash = await page.locator(".flash").all_inner_texts()
        raise AssertionError(f"sign-in as {username!r} refused: {flash}")


async def screenshot(page: Page, name: str) -> Path:
    """docs/screenshots/latest/NAME.png of what the 1280x800 viewport shows."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise ValueError(f"screenshot name {name!r}: use lower-case letters, digits and dashes")
    assert page.viewport_size == VIEWPORT, page.viewport_size
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=path, type="png")
    return path


async def mark_document(page: Page) -> None:
    """Marks the document on show, so that `same_document` can tell a live
    update (the marked document changed) from a reload (a new document)."""
    await page.evaluate("window.__dashboardTestMark = true")


async def same_document(page: Page) -> bool:
    return bool(await page.evaluate("window.__dashboardTestMark === true"))
