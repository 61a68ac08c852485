"""Who is asking: the signed-in person behind a request's session cookie."""

from __future__ import annotations

from starlette.requests import Request

from orchestrator.auth.identity import Identity
from orchestrator.errors import Unauthenticated
from orchestrator.web.session import SESSION_COOKIE
from orchestrator.web.view import Dashboard


def dashboard_of(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


async def signed_in(request: Request) -> Identity | None:
    dashboard = dashboard_of(request)
    session = dashboard.cookies.read(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    try:
        return await dashboard.accounts.session_identity(session.user_id, session.session_id)
    except Unauthenticated:
        return None
