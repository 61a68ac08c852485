"""What a page handler works with: who is signed in, the engine, and the
ways to answer (a page, a redirect with a message)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jinja2 import Environment
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from orchestrator.auth.identity import Identity
from orchestrator.web.limits import read_form
from orchestrator.web.session import CSRF_FIELD, SessionCookies

if TYPE_CHECKING:
    from orchestrator.engine.accounts import Accounts
    from orchestrator.engine.credentials import CredentialWatch
    from orchestrator.engine.overview import OverviewReader
    from orchestrator.engine.runtime import Engine
    from orchestrator.engine.status import StatusReader
    from orchestrator.engine.waiting import WaitReasons

FLASH_COOKIE = "orchestrator_flash"


@dataclass(frozen=True)
class Dashboard:
    """Everything the pages share, built once by the server."""

    engine: Engine
    accounts: Accounts
    credentials: CredentialWatch
    status: StatusReader
    waiting: WaitReasons
    overview: OverviewReader
    cookies: SessionCookies
    templates: Environment
    default_max_attempts: int


@dataclass(frozen=True)
class Flash:
    kind: str  # "ok" or "error"
    text: str


class View:
    def __init__(self, request: Request, caller: Identity, dashboard: Dashboard) -> None:
        self.request = request
        self.caller = caller
        self.dashboard = dashboard
        self.engine = dashboard.engine
        self.accounts = dashboard.accounts
        self.csrf_token = dashboard.cookies.csrf_token(caller.session_id or "")

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default).strip()

    async def form(self) -> FormData:
        return await read_form(self.request)

    def context(self, **values: Any) -> dict[str, Any]:
        """What every template sees, then the page's own values."""
        return base_context(self.request, self.caller, self.csrf_token) | values

    def render(self, template: str, status: int = 200, **values: Any) -> Response:
        return render(self.dashboard, self.request, template, status, self.context(**values))

    def redirect(self, path: str, *, ok: str | None = None, error: str | None = None) -> Response:
        response = RedirectResponse(path, status_code=303)
        if ok or error:
            set_flash(response, Flash("error" if error else "ok", error or ok or ""), self.request)
        return response


def base_context(request: Request, caller: Identity | None, csrf_token: str) -> dict[str, Any]:
    return {
        "caller": caller,
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token,
        "path": request.url.path,
        "live_url": None,
        "flash": read_flash(request),
    }


def render(
    dashboard: Dashboard, request: Request, template: str, status: int, context: dict[str, Any]
) -> Response:
    html = dashboard.templates.get_template(template).render(context)
    response = HTMLResponse(html, status_code=status)
    if FLASH_COOKIE in request.cookies:
        # Shown once.
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def set_flash(response: Response, flash: Flash, request: Request) -> None:
    value = base64.urlsafe_b64encode(json.dumps([flash.kind, flash.text]).encode()).decode()
    response.set_cookie(
        FLASH_COOKIE,
        value,
        max_age=60,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def read_flash(request: Request) -> Flash | None:
    value = request.cookies.get(FLASH_COOKIE)
    if not value:
        return None
    try:
        kind, text = json.loads(base64.urlsafe_b64decode(value.encode()))
    except (ValueError, TypeError):
        return None
    # Shown escaped like any text; the kind only picks a class.
    return Flash("error" if kind == "error" else "ok", str(text)[:2000])
