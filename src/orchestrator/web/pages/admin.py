"""/admin/users and /admin/tokens: accounts and API tokens, for admins only.

The same engine calls as AuthService's admin methods, so the same rules hold:
you cannot disable yourself, passwords and names are checked by the server,
disabling a user or resetting its password ends its sessions at once (its
dashboard too). A new token's secret is shown once, in the answer to the form
that made it: never in a cookie or a URL, and never again.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from orchestrator.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from orchestrator.store.api_tokens import ApiToken
from orchestrator.store.types import utcnow
from orchestrator.web.routing import Handler, action, page
from orchestrator.web.view import Flash, View

USERS = "/admin/users"
TOKENS = "/admin/tokens"
USERS_PER_PAGE = 50
DAY = 86400
# (seconds, label): what the token form offers; 0 is no expiry, as for the API.
EXPIRIES = (
    (0, "Never"),
    (DAY, "1 day"),
    (7 * DAY, "7 days"),
    (30 * DAY, "30 days"),
    (90 * DAY, "90 days"),
    (365 * DAY, "1 year"),
)


def _admin(view: View) -> None:
    # Not a 404: these pages are not someone's objects, and a member knows they exist.
    if not view.caller.is_admin:
        raise PermissionDenied("only an admin may do this")


def _refused(error: InvalidArgument | AlreadyExists) -> Flash:
    return Flash("error", error.message)


def _fields(error: InvalidArgument | AlreadyExists) -> dict[str, str]:
    """The server's refusal by form field ("" for the form as a whole)."""
    if isinstance(error, AlreadyExists):
        return {"username": error.message}
    if not error.violations:
        return {"": error.message}
    return {v.field: v.description for v in error.violations}


# -- users -----------------------------------------------------------------------


async def _users_page(view: View, status: int = 200, **values: Any) -> Response:
    users, next_page = await view.accounts.list_users(USERS_PER_PAGE, view.query("page"))
    defaults: dict[str, Any] = {
        "problems": {},
        "entered": {"username": "", "role": "member"},
        "reset": None,
    }
    return view.render(
        "users.html",
        status,
        users=users,
        next_page=next_page,
        first_page=not view.query("page"),
        **(defaults | values),
    )


async def _users(view: View) -> Response:
    _admin(view)
    return await _users_page(view)


async def _create_user(view: View) -> Response:
    _admin(view)
    form = await view.form()
    username = str(form.get("username") or "").strip()
    role = str(form.get("role") or "")
    try:
        user = await view.accounts.create_user(username, str(form.get("password") or ""), role)
    except (InvalidArgument, AlreadyExists) as error:
        # The form again, with what was typed (never the password) and each problem by its field.
        return await _users_page(
            view,
            409 if isinstance(error, AlreadyExists) else 400,
            flash=_refused(error),
            problems=_fields(error),
            entered={"username": username, "role": role},
        )
    return view.redirect(USERS, ok=f"User {user.username} created ({user.role}).")


def _set_disabled(disabled: bool) -> Handler:
    async def handler(view: View) -> Response:
        _admin(view)
        user = await view.accounts.set_disabled(view.caller, view.param("user_id"), disabled)
        if disabled:
            return view.redirect(
                USERS, ok=f"{user.username} is disabled: signed out everywhere, cannot sign in."
            )
        return view.redirect(USERS, ok=f"{user.username} can sign in again.")

    return handler


async def _reset_password(view: View) -> Response:
    _admin(view)
    user_id = view.param("user_id")
    form = await view.form()
    try:
        user = await view.accounts.reset_password(user_id, str(form.get("password") or ""))
    except InvalidArgument as error:
        problem = "; ".join(_fields(error).values())
        return await _users_page(
            view, 400, flash=_refused(error), reset={"user_id": user_id, "problem": problem}
        )
    return view.redirect(USERS, ok=f"{user.username}'s password is reset: its sessions have ended.")


# -- API tokens ------------------------------------------------------------------


async def _owners(view: View, tokens: list[ApiToken]) -> dict[str, str]:
    names: dict[str, str] = {}
    for owner_id in {token.owner_id for token in tokens}:
        try:
            names[owner_id] = (await view.accounts.get_user(owner_id)).username
        except NotFound:
            names[owner_id] = owner_id[:8]
    return names


async def _tokens_page(view: View, status: int = 200, **values: Any) -> Response:
    tokens = await view.accounts.api_tokens.list(view.caller)
    defaults: dict[str, Any] = {
        "created": None,
        "problems": {},
        "entered": {"name": "", "scope": "worker", "expires_in_seconds": "0"},
    }
    return view.render(
        "tokens.html",
        status,
        tokens=tokens,
        owners=await _owners(view, tokens),
        now=utcnow(),
        expiries=EXPIRIES,
        **(defaults | values),
    )


async def _tokens(view: View) -> Response:
    _admin(view)
    return await _tokens_page(view)


async def _create_token(view: View) -> Response:
    _admin(view)
    form = await view.form()
    name = str(form.get("name") or "").strip()
    scope = str(form.get("scope") or "")
    expires = str(form.get("expires_in_seconds") or "0")
    entered = {"name": name, "scope": scope, "expires_in_seconds": expires}
    try:
        seconds = int(expires)
    except ValueError:
        seconds = -1  # refused by the engine with the rule for this field
    try:
        secret, token = await view.accounts.api_tokens.create(view.caller, name, scope, seconds)
    except InvalidArgument as error:
        return await _tokens_page(
            view, 400, flash=_refused(error), problems=_fields(error), entered=entered
        )
    # Answered here, not redirected: the secret must not travel in a URL or cookie.
    return await _tokens_page(view, 201, created={"secret": secret, "token": token})


async def _revoke_token(view: View) -> Response:
    _admin(view)
    token = await view.accounts.api_tokens.revoke(view.caller, view.param("token_id"))
    return view.redirect(TOKENS, ok=f"Token {token.name} revoked: it no longer works.")


routes = [
    Route(USERS, page(_users), methods=["GET"]),
    Route(USERS, action(_create_user, back=lambda view: USERS), methods=["POST"]),
    Route(
        USERS + "/{user_id}/disable",
        action(_set_disabled(True), back=lambda view: USERS),
        methods=["POST"],
    ),
    Route(
        USERS + "/{user_id}/enable",
        action(_set_disabled(False), back=lambda view: USERS),
        methods=["POST"],
    ),
    Route(
        USERS + "/{user_id}/password",
        action(_reset_password, back=lambda view: USERS),
        methods=["POST"],
    ),
    Route(TOKENS, page(_tokens), methods=["GET"]),
    Route(TOKENS, action(_create_token, back=lambda view: TOKENS), methods=["POST"]),
    Route(
        TOKENS + "/{token_id}/revoke",
        action(_revoke_token, back=lambda view: TOKENS),
        methods=["POST"],
    ),
]
