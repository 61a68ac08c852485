"""/login and /logout: the same accounts, throttle and sessions as the gRPC
AuthService's Login and Logout."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from orchestrator.errors import ResourceExhausted, Unauthenticated
from orchestrator.web.caller import dashboard_of, signed_in
from orchestrator.web.limits import read_form
from orchestrator.web.routing import action
from orchestrator.web.session import (
    CSRF_FIELD,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    new_sign_in_token,
    same_token,
)
from orchestrator.web.view import View, base_context, render


def _next(request: Request, value: str | None) -> str:
    """Where to go after signing in: only a path of this site (`//host` is another site)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _peer(request: Request) -> str:
    """The address as gRPC names it, so one throttle counts both doors."""
    host = request.client.host if request.client else "unknown"
    return f"ipv6:[{host}]" if ":" in host else f"ipv4:{host}"


def _form(
    request: Request, status: int, token: str, *, username: str = "", error: str = ""
) -> Response:
    context = base_context(request, None, token) | {
        "next": _next(request, request.query_params.get("next")),
        "username": username,
        "error": error,
    }
    response = render(dashboard_of(request), request, "login.html", status, context)
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def show(request: Request) -> Response:
    if await signed_in(request) is not None:
        return RedirectResponse(_next(request, request.query_params.get("next")), 303)
    return _form(request, 200, request.cookies.get(SIGN_IN_COOKIE) or new_sign_in_token())


async def sign_in(request: Request) -> Response:
    form = await read_form(request)
    expected = request.cookies.get(SIGN_IN_COOKIE)
    given = form.get(CSRF_FIELD)
    username = str(form.get("username") or "")
    if not same_token(expected, given if isinstance(given, str) else None):
        return _form(
            request,
            403,
            new_sign_in_token(),
            username=username,
            error="The sign-in form expired: please try again.",
        )
    dashboard = dashboard_of(request)
    try:
        tokens = await dashboard.accounts.login(
            username, str(form.get("password") or ""), _peer(request)
        )
    except Unauthenticated as error:
        return _form(request, 401, new_sign_in_token(), username=username, error=error.message)
    except ResourceExhausted as error:
        return _form(request, 429, new_sign_in_token(), username=username, error=error.message)
    target = _next(request, str(form.get("next") or ""))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        dashboard.cookies.issue(tokens.user.id, tokens.session_id),
        max_age=dashboard.cookies.lifetime_seconds,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(SIGN_IN_COOKIE, path="/login")
    return response


async def _sign_out(view: View) -> Response:
    await view.accounts.logout(view.caller, "")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


routes = [
    Route("/login", show, methods=["GET"]),
    Route("/login", sign_in, methods=["POST"]),
    Route("/logout", action(_sign_out), methods=["POST"]),
]
