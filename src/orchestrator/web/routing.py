"""Turning page handlers into routes: sign-in required, CSRF checked on every
form, the engine's errors answered as pages a person can act on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from orchestrator.errors import (
    InvalidArgument,
    NotFound,
    OrchestratorError,
    PermissionDenied,
)
from orchestrator.web import live
from orchestrator.web.caller import dashboard_of, signed_in
from orchestrator.web.limits import read_form
from orchestrator.web.readings import SharedReads
from orchestrator.web.session import CSRF_FIELD, SESSION_COOKIE
from orchestrator.web.view import View, base_context, render

Handler = Callable[[View], Awaitable[Response]]
Context = Callable[[View], Awaitable[dict[str, Any]]]


def to_sign_in(request: Request) -> Response:
    # After signing in, back to the page asked for; a form's target is no page.
    target = "/"
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    if SESSION_COOKIE in request.cookies:
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def error_page(request: Request, status: int, title: str, text: str) -> Response:
    """A page for what went wrong, for the signed-in or not."""
    context = base_context(request, None, "") | {"title": title, "text": text}
    return render(dashboard_of(request), request, "error.html", status, context)


def answer_error(view: View, error: OrchestratorError) -> Response:
    if isinstance(error, NotFound):
        # The same page whether it does not exist or is someone else's.
        return view.render("error.html", 404, title="Not found", text=error.message)
    if isinstance(error, PermissionDenied):
        return view.render("error.html", 403, title="Not allowed", text=error.message)
    raise error


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A GET page for signed-in people."""

    async def endpoint(request: Request) -> Response:
        caller = await signed_in(request)
        if caller is None:
            return to_sign_in(request)
        view = View(request, caller, dashboard_of(request))
        try:
            return await handler(view)
        except (NotFound, PermissionDenied) as error:
            return answer_error(view, error)

    return endpoint


def action(
    handler: Handler, back: Callable[[View], str] | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """A form post: checked for its CSRF token first. A refusal by the engine
    goes back to `back` (the page the form was on) with the server's message."""

    async def endpoint(request: Request) -> Response:
        caller = await signed_in(request)
        if caller is None:
            return to_sign_in(request)
        view = View(request, caller, dashboard_of(request))
        form = await read_form(request)
        token = form.get(CSRF_FIELD)
        if not dashboard_of(request).cookies.csrf_valid(
            caller.session_id or "", token if isinstance(token, str) else None
        ):
            return view.render(
                "error.html",
                403,
                title="Form expired",
                text="This form was not sent from this dashboard's page, or it is too old: "
                "go back, reload the page and try again.",
            )
        try:
            return await handler(view)
        except (NotFound, PermissionDenied) as error:
            return answer_error(view, error)
        except OrchestratorError as error:
            if back is None:
                raise
            message = error.message
            if isinstance(error, InvalidArgument) and error.violations:
                message = "; ".join(f"{v.field}: {v.description}" for v in error.violations)
            return view.redirect(back(view), error=message)

    return endpoint


@dataclass(frozen=True)
class LivePage:
    """A page whose regions (blocks named `live_<id>` in its template, inside
    the element of that id) are sent again when what they show changes.

    `key` names the one task or run the page shows (None: it shows many, any
    change may matter), and `follow` more keys its values name; `every` is
    the least time between two renders, so a burst of changes costs one
    render."""

    path: str
    template: str
    context: Context
    key: Callable[[View], str | None] = field(default=lambda view: None)
    follow: Callable[[dict[str, Any]], list[str]] = field(default=lambda values: [])
    every: float = 1.0
    shared: SharedReads = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shared", SharedReads(self.every))

    def routes(self) -> list[Route]:
        async def show(view: View) -> Response:
            values = await self.context(view)
            url = "/live" + view.request.url.path
            if view.request.url.query:
                url += "?" + view.request.url.query
            return view.render(self.template, live_url=url, **values)

        async def stream(request: Request) -> Response:
            return await live.endpoint(request, self)

        return [
            Route(self.path, page(show), methods=["GET"]),
            Route("/live" + self.path, stream, methods=["GET"]),
        ]
