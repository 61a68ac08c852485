"""The browser set-up itself: Chromium reaches the real server over its HTTP
port, with the demo worker connected; the problem watcher that every browser
test relies on catches what it must and only that; and signing in works."""

from __future__ import annotations

import re

from playwright.async_api import Page, Route, expect

from tests.browser.conftest import Account, PageProblems, sign_in, submit_sign_in
from tests.e2e.conftest import WorkerProcess

# A page of our own, served by the browser itself, with the CSP the dashboard sends.
ELSEWHERE = "http://fixture.invalid"
CSP = "default-src 'self'; script-src 'self'; style-src 'self'"


async def test_chromium_reads_the_servers_metrics(page: Page) -> None:
    response = await page.goto("/metrics")

    assert response is not None and response.status == 200
    text = await page.locator("body").inner_text()
    assert re.search(r"^orchestrator_workers_connected\{[^}]*\} 1\.0$", text, re.M), text


async def test_problems_are_a_broken_page_not_an_error_status_asked_for(
    page: Page, page_problems: PageProblems
) -> None:
    async def serve(route: Route) -> None:
        if route.request.url.endswith("/broken"):
            body = '<p style="color: red">inline</p><link rel="stylesheet" href="/gone.css">'
            await route.fulfill(
                body=body, content_type="text/html", headers={"Content-Security-Policy": CSP}
            )
        else:
            await route.fulfill(status=404, body="", content_type="text/css")

    await page.route(f"{ELSEWHERE}/**", serve)
    await page.goto(f"{ELSEWHERE}/broken")
    await page.wait_for_load_state("load")
    found = page_problems.take()
    assert any("Content Security Policy" in problem for problem in found), found
    assert any(f"{ELSEWHERE}/gone.css" in problem for problem in found), found

    missing = await page.goto("/no-such-page")
    assert missing is not None and missing.status == 404
    assert page_problems.take() == []


async def test_a_member_signs_in_and_sees_the_demo_worker(
    page: Page, member: Account, demo_worker: WorkerProcess
) -> None:
    await sign_in(page, member.username, member.password)
    await page.goto("/workers")

    row = page.locator(f'tr[data-worker-id="{demo_worker.worker_id}"]')
    await expect(row).to_contain_text("echo")
    await expect(page.locator("header .who")).to_have_text("member")


async def test_a_wrong_password_is_refused_on_the_sign_in_page(page: Page, member: Account) -> None:
    response = await submit_sign_in(page, member.username, "not-the-password")

    assert response is not None and response.status == 401
    assert page.url.endswith("/login")
    await expect(page.locator(".flash.error")).to_have_text("invalid username or password")
    await page.goto("/workers")
    assert "/login?next=" in page.url
