"""Signing in to the dashboard: the same accounts and throttle as gRPC, a
cookie that ends with the session, CSRF on every form, security headers."""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Iterator

import pytest

from orchestrator.proto import auth_pb2
from orchestrator.web.limits import MAX_BODY_BYTES
from orchestrator.web.live import MAX_STREAMS_PER_SESSION
from tests.e2e.conftest import Client, WorkerFactory
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess
from tests.support.web import WebClient, dashboard_url

pytestmark = [pytest.mark.any_database, pytest.mark.server_env(ORCHESTRATOR_HTTP_PORT="0")]


@pytest.fixture
def web(orchestrator: ServerProcess) -> Iterator[WebClient]:
    yield WebClient(dashboard_url(orchestrator))


def test_pages_need_a_session_and_sign_in_returns_to_them(web: WebClient) -> None:
    reply = web.get("/workers?x=1")
    assert reply.status == 303
    assert reply.location == "/login?next=%2Fworkers%3Fx%3D1"
    web.get("/login?next=%2Fworkers%3Fx%3D1")
    signed = web.post(
        "/login",
        {"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD, "next": "/workers?x=1"},
    )
    assert signed.status == 303 and signed.location == "/workers?x=1"
    assert web.get("/workers").status == 200


def test_the_session_cookie_is_http_only_and_same_site_strict(web: WebClient) -> None:
    reply = web.sign_in(ADMIN_USERNAME, ADMIN_PASSWORD)
    cookie = next(
        c
        for c in reply.headers.get_all("set-cookie") or []
        if c.startswith("orchestrator_session=")
    )
    attributes = cookie.lower()
    assert "httponly" in attributes and "samesite=strict" in attributes and "path=/" in attributes
    # Plain HTTP here: a Secure cookie would never come back.
    assert "secure" not in attributes


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
def test_sign_in_never_sends_the_browser_to_another_site(web: WebClient, target: str) -> None:
    web.get("/login")
    reply = web.post(
        "/login", {"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD, "next": target}
    )
    assert reply.status == 303 and reply.location == "/"


def test_a_wrong_password_is_refused_with_one_message(web: WebClient) -> None:
    web.get("/login")
    reply = web.post("/login", {"username": ADMIN_USERNAME, "password": "wrong-password-1"})
    assert reply.status == 401
    assert "invalid username or password" in reply.text
    assert "orchestrator_session" not in web.cookies
    web.get("/login")
    unknown = web.post("/login", {"username": "nobody", "password": "wrong-password-1"})
    assert unknown.status == 401 and "invalid username or password" in unknown.text


def test_sign_in_without_its_form_token_is_refused(web: WebClient) -> None:
    web.get("/login")
    reply = web.post(
        "/login", {"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}, csrf="forged"
    )
    assert reply.status == 403
    assert "orchestrator_session" not in web.cookies
    fresh = WebClient(web.base)
    no_cookie = fresh.post(
        "/login", {"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}, csrf="anything"
    )
    assert no_cookie.status == 403


def test_a_form_without_the_csrf_token_changes_nothing(web: WebClient) -> None:
    web.sign_in(ADMIN_USERNAME, ADMIN_PASSWORD)
    web.get("/workers")
    for token in (None, "0" * 64):
        reply = web.post("/logout", {}, csrf=token)
        assert reply.status == 403
        assert "Form expired" in reply.text
    # Still signed in: the logout was not done.
    assert web.get("/workers").status == 200


def test_logout_ends_the_session_for_the_old_cookie_too(web: WebClient) -> None:
    web.sign_in(ADMIN_USERNAME, ADMIN_PASSWORD)
    web.get("/workers")
    stolen = dict(web.cookies)
    reply = web.post("/logout", {})
    assert reply.status == 303 and reply.location == "/login"
    replay = WebClient(web.base, cookies=stolen)
    assert replay.get("/workers").status == 303


def test_login_failures_count_for_grpc_logins_too(
    web: WebClient, orchestrator: ServerProcess
) -> None:
    """One throttle for both doors: failures in the browser lock the name for gRPC."""
    for _ in range(5):
        web.get("/login")
        web.post("/login", {"username": "victim", "password": "wrong-password-1"})
    web.get("/login")
    throttled = web.post("/login", {"username": "victim", "password": "wrong-password-1"})
    assert throttled.status == 429, throttled.text[:500]
    assert "try again" in throttled.text.lower()


async def test_a_disabled_user_is_signed_out_at_once(web: WebClient, admin: Client) -> None:
    user = await admin.auth.CreateUser(
        auth_pb2.CreateUserRequest(username="mia", password="mia-password-1", role="member"),
        metadata=admin.metadata,
    )
    web.sign_in("mia", "mia-password-1")
    assert web.get("/workers").status == 200
    await admin.auth.DisableUser(auth_pb2.DisableUserRequest(id=user.id), metadata=admin.metadata)
    assert web.get("/workers").status == 303


def test_answers_carry_the_security_headers(web: WebClient) -> None:
    for page in (
        web.get("/login"),
        web.sign_in(ADMIN_USERNAME, ADMIN_PASSWORD),
        web.get("/workers"),
    ):
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"


def test_an_unknown_page_is_a_not_found_page(web: WebClient) -> None:
    reply = web.get("/no/such/page")
    assert reply.status == 404 and "<h1>Not found</h1>" in reply.text


async def test_a_live_page_follows_changes_and_ends_when_signed_out(
    web: WebClient, start_worker: WorkerFactory
) -> None:
    web.sign_in(ADMIN_USERNAME, ADMIN_PASSWORD)
    web.get("/workers")
    with web.live("/live/workers") as live:
        assert "No workers connected" in live.next_region("workers", timeout=10)
        await start_worker("--demo", "--name", "watched-worker")
        assert "watched-worker" in live.next_region("workers", timeout=10)
        assert web.post("/logout", {}).status == 303
        # Nothing else changes: the session's end alone ends the stream.
        assert live.next_event(timeout=10).name == "gone"


async def test_a_disabled_users_open_live_page_ends_at_once(web: WebClient, admin: Client) -> None:
    user = await admin.auth.CreateUser(
        auth_pb2.CreateUserRequest(username="quiet", password="quiet-password-1", role="member"),
        metadata=admin.metadata,
    )
    web.sign_in("quiet", "quiet-password-1")
    with web.live("/live/workers") as live:
        live.next_region("workers", timeout=10)
        await admin.auth.DisableUser(
            auth_pb2.DisableUserRequest(id=user.id), metadata=admin.metadata
        )
        assert live.next_event(timeout=10).name == "gone"


def test_a_live_page_without_a_session_is_told_to_sign_in(web: WebClient) -> None:
    """An event stream, not a redirect: a browser's EventSource would give
    up on a redirect to a page and leave the page stale."""
    with web.live("/live/workers") as live:
        assert live.next_event(timeout=10).name == "gone"


def test_a_session_holds_a_bounded_number_of_live_pages(web: WebClient) -> None:
    web.sign_in(ADMIN_USERNAME, ADMIN_PASSWORD)
    with contextlib.ExitStack() as streams:
        for _ in range(MAX_STREAMS_PER_SESSION):
            streams.enter_context(web.live("/live/workers")).next_region("workers")
        assert web.get("/live/workers").status == 429
    # Closed streams free their places, once the server has seen them go.
    deadline = time.monotonic() + 20
    while True:
        try:
            with web.live("/live/workers") as live:
                live.next_region("workers")
                return
        except AssertionError:
            assert time.monotonic() < deadline, "the closed streams still count"
            time.sleep(0.1)


def test_oversized_and_unsized_posts_are_refused_before_they_are_read(web: WebClient) -> None:
    web.get("/login")
    too_big = web.request(
        "POST",
        "/login",
        "username=" + "x" * (MAX_BODY_BYTES + 1),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert too_big.status == 413
    connection = http.client.HTTPConnection(*web.base.removeprefix("http://").split(":"))
    try:
        connection.putrequest("POST", "/login")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.putheader("Content-Type", "application/x-www-form-urlencoded")
        connection.endheaders()
        connection.send(b"5\r\nx=abc\r\n0\r\n\r\n")
        assert connection.getresponse().status == 411
    finally:
        connection.close()
