"""The dashboard's admin pages (/admin/users, /admin/tokens) against a real
server: only admins, refusals shown with the server's message, disabling and
password resets ending sessions at once, a token's secret shown once and
working over gRPC until it is revoked, and nothing changed without the CSRF
token."""

from __future__ import annotations

import html
import re

import grpc
import pytest
from grpc import aio

from orchestrator.proto import auth_pb2
from tests.e2e.conftest import CALL_TIMEOUT, Client, RawWorker, connect
from tests.e2e.test_security_api_tokens import bearer, code_of
from tests.e2e.workflow_helpers import MEMBER_PASSWORD, create_member
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess
from tests.support.web import Page, WebClient, signed_in

pytestmark = [pytest.mark.any_database, pytest.mark.server_env(ORCHESTRATOR_HTTP_PORT="0")]

SECRET = re.compile(r'id="token-secret">(orch_[^<]+)<')
ONLY_ADMINS = "only an admin may do this"


def admin_web(server: ServerProcess) -> WebClient:
    return signed_in(server, ADMIN_USERNAME, ADMIN_PASSWORD)


def user_ids(page: Page) -> dict[str, str]:
    """Usernames listed on /admin/users, with their ids."""
    return {
        name: user_id
        for user_id, name in re.findall(
            r'data-user-id="([^"]+)" data-username="([^"]+)"', page.text
        )
    }


def flash(page: Page, kind: str) -> str:
    found = re.search(rf'<p class="flash {kind}">([^<]*)</p>', page.text)
    assert found, f"no {kind} flash on the page:\n{page.text[:3000]}"
    return html.unescape(found.group(1))


def field_problem(page: Page, field: str) -> str:
    found = re.search(rf'id="problem-{field}">([^<]*)<', page.text)
    assert found, f"no problem shown for {field}:\n{page.text[:3000]}"
    return html.unescape(found.group(1))


async def usernames(admin: Client) -> list[str]:
    listed = await admin.auth.ListUsers(
        auth_pb2.ListUsersRequest(page_size=500), metadata=admin.metadata, timeout=CALL_TIMEOUT
    )
    return [user.username for user in listed.users]


async def token_names(admin: Client) -> list[str]:
    listed = await admin.auth.ListApiTokens(
        auth_pb2.ListApiTokensRequest(), metadata=admin.metadata, timeout=CALL_TIMEOUT
    )
    return [token.name for token in listed.api_tokens]


async def test_a_member_is_refused_the_admin_pages(
    orchestrator: ServerProcess, admin: Client
) -> None:
    await create_member(admin, "plain-member")
    web = signed_in(orchestrator, "plain-member", MEMBER_PASSWORD)
    overview = web.get("/")
    assert 'href="/admin/users"' not in overview.text
    for path in ("/admin/users", "/admin/tokens"):
        refused = web.get(path)
        assert refused.status == 403 and ONLY_ADMINS in refused.text
    # With a valid form token from a page it may see: still refused, nothing made.
    web.get("/")
    made = web.post("/admin/users", {"username": "sneaky", "password": "sneaky-pass-1"})
    assert made.status == 403 and ONLY_ADMINS in made.text
    web.get("/")
    token = web.post("/admin/tokens", {"name": "sneaky", "scope": "api"})
    assert token.status == 403
    assert "sneaky" not in await usernames(admin)
    assert await token_names(admin) == []


async def test_creating_users_and_the_refusals_shown_by_field(
    orchestrator: ServerProcess, admin: Client
) -> None:
    web = admin_web(orchestrator)
    web.get("/admin/users")
    created = web.post(
        "/admin/users", {"username": "carol", "password": "carol-password-1", "role": "member"}
    )
    assert created.status == 303 and created.location == "/admin/users"
    listing = web.get("/admin/users")
    assert flash(listing, "ok") == "User carol created (member)."
    assert "carol" in user_ids(listing)
    async with connect(orchestrator, "carol", "carol-password-1"):
        pass  # she can log in over gRPC

    again = web.post(
        "/admin/users", {"username": "carol", "password": "other-password-1", "role": "admin"}
    )
    assert again.status == 409
    assert flash(again, "error") == "user 'carol' already exists"
    assert field_problem(again, "username") == "user 'carol' already exists"

    web.get("/admin/users")
    short = web.post("/admin/users", {"username": "dave", "password": "short", "role": "member"})
    assert short.status == 400
    assert field_problem(short, "password") == "must be at least 8 characters"
    # What was typed comes back (never the password).
    assert 'name="username" value="dave"' in short.text and 'value="short"' not in short.text
    assert sorted(await usernames(admin)) == ["admin", "carol"]


async def test_a_refused_username_is_shown_as_text(
    orchestrator: ServerProcess, admin: Client
) -> None:
    web = admin_web(orchestrator)
    web.get("/admin/users")
    name = '<script>alert("x")</script>'
    refused = web.post(
        "/admin/users", {"username": name, "password": "fine-password-1", "role": "member"}
    )
    assert refused.status == 400
    assert "<script>alert" not in refused.text
    assert 'value="&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"' in refused.text
    assert field_problem(refused, "username").startswith("3 to 64 letters")
    assert name not in await usernames(admin)


async def test_forms_without_the_csrf_token_change_nothing(
    orchestrator: ServerProcess, admin: Client
) -> None:
    member_id = await create_member(admin, "kept-member")
    web = admin_web(orchestrator)
    web.get("/admin/users")
    for csrf in (None, "forged"):
        made = web.post(
            "/admin/users",
            {"username": "csrf-made", "password": "csrf-password-1", "role": "admin"},
            csrf=csrf,
        )
        assert made.status == 403
        disabled = web.post(f"/admin/users/{member_id}/disable", {}, csrf=csrf)
        assert disabled.status == 403
        token = web.post("/admin/tokens", {"name": "csrf-token", "scope": "worker"}, csrf=csrf)
        assert token.status == 403 and "orch_" not in token.text
    assert "csrf-made" not in await usernames(admin)
    assert await token_names(admin) == []
    assert 'data-username="kept-member" data-disabled="false"' in web.get("/admin/users").text


async def test_disabling_a_user_ends_its_dashboard_session_at_once(
    orchestrator: ServerProcess, admin: Client
) -> None:
    member_id = await create_member(admin, "soon-disabled")
    member = signed_in(orchestrator, "soon-disabled", MEMBER_PASSWORD)
    assert member.get("/").status == 200

    web = admin_web(orchestrator)
    web.get("/admin/users")
    disabled = web.post(f"/admin/users/{member_id}/disable", {})
    assert disabled.status == 303
    listing = web.get("/admin/users")
    assert flash(listing, "ok").startswith("soon-disabled is disabled")
    assert 'data-username="soon-disabled" data-disabled="true"' in listing.text

    gone = member.get("/")
    assert gone.status == 303 and gone.location.startswith("/login")
    member.get("/login")
    assert (
        member.post("/login", {"username": "soon-disabled", "password": MEMBER_PASSWORD}).status
        == 401
    )

    # An admin cannot disable itself: the server's refusal is shown.
    own_id = user_ids(listing)[ADMIN_USERNAME]
    refused = web.post(f"/admin/users/{own_id}/disable", {})
    assert refused.status == 303 and refused.location == "/admin/users"
    assert flash(web.get("/admin/users"), "error") == "you cannot disable your own account"

    web.get("/admin/users")
    assert web.post(f"/admin/users/{member_id}/enable", {}).status == 303
    assert flash(web.get("/admin/users"), "ok") == "soon-disabled can sign in again."
    signed_in(orchestrator, "soon-disabled", MEMBER_PASSWORD)


async def test_resetting_a_password(orchestrator: ServerProcess, admin: Client) -> None:
    member_id = await create_member(admin, "forgetful")
    member = signed_in(orchestrator, "forgetful", MEMBER_PASSWORD)
    web = admin_web(orchestrator)

    web.get("/admin/users")
    short = web.post(f"/admin/users/{member_id}/password", {"password": "tiny"})
    assert short.status == 400
    assert field_problem(short, f"reset-{member_id}") == "password: must be at least 8 characters"
    assert member.get("/").status == 200  # refused: nothing changed

    web.get("/admin/users")
    reset = web.post(f"/admin/users/{member_id}/password", {"password": "brand-new-pass-1"})
    assert reset.status == 303
    assert (
        flash(web.get("/admin/users"), "ok")
        == "forgetful's password is reset: its sessions have ended."
    )
    gone = member.get("/")
    assert gone.status == 303 and gone.location.startswith("/login")
    member.get("/login")
    assert (
        member.post("/login", {"username": "forgetful", "password": MEMBER_PASSWORD}).status == 401
    )
    signed_in(orchestrator, "forgetful", "brand-new-pass-1")


async def test_a_token_is_shown_once_works_for_a_worker_and_stops_when_revoked(
    orchestrator: ServerProcess, admin: Client
) -> None:
    web = admin_web(orchestrator)
    empty = web.get("/admin/tokens")
    assert "No API tokens yet" in empty.text
    created = web.post(
        "/admin/tokens", {"name": "ci-worker", "scope": "worker", "expires_in_seconds": "0"}
    )
    assert created.status == 201
    found = SECRET.search(created.text)
    assert found, created.text[:3000]
    secret = found.group(1)
    assert "it will not be shown again" in created.text
    # Only in the page's body: never in a header (cookie, location).
    assert all(secret not in value for _, value in created.headers.items())
    assert created.headers["cache-control"] == "no-store"

    listing = web.get("/admin/tokens")
    assert secret not in listing.text
    assert secret[:12] in listing.text
    (token_id,) = re.findall(r'<tr data-token-id="([^"]+)" data-state="active">', listing.text)

    # It works as a worker's credential over gRPC: hello, then an assignment.
    worker = RawWorker(admin, bearer(secret))
    await worker.hello("dashboard-made", ["made-on-the-web"])
    task = await admin.create("made-on-the-web", {}, start=True)
    assert (await worker.assignment()).task_id == task.id

    revoked = web.post(f"/admin/tokens/{token_id}/revoke", {})
    assert revoked.status == 303
    after = web.get("/admin/tokens")
    assert flash(after, "ok") == "Token ci-worker revoked: it no longer works."
    assert f'<tr data-token-id="{token_id}" data-state="revoked">' in after.text
    # The connected worker's stream ends, and the token opens nothing more.
    with pytest.raises(aio.AioRpcError) as ended:
        message = await worker.receive()
        pytest.fail(f"a revoked token's worker still received {message.WhichOneof('kind')}")
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
    worker.call.cancel()
    whoami = admin.auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=bearer(secret), timeout=10)
    assert await code_of(whoami) == grpc.StatusCode.UNAUTHENTICATED


async def test_a_refused_token_keeps_what_was_typed(orchestrator: ServerProcess) -> None:
    web = admin_web(orchestrator)
    web.get("/admin/tokens")
    refused = web.post("/admin/tokens", {"name": "<i>bad</i> name", "scope": "api"})
    assert refused.status == 400
    assert field_problem(refused, "name") == "1-128 letters, digits, spaces or _.:@/-"
    assert 'value="&lt;i&gt;bad&lt;/i&gt; name"' in refused.text and "<i>bad" not in refused.text
    assert SECRET.search(refused.text) is None
