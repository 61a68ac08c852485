"""The dashboard's routes, assembled: sign-in, the pages, static files."""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from orchestrator.web.pages import admin, overview, runs, sign_in, tasks, workers, workflows
from orchestrator.web.routing import error_page

STATIC = Path(__file__).parent / "static"


def routes() -> list[BaseRoute]:
    return [
        *sign_in.routes,
        *overview.routes,
        *admin.routes,
        *tasks.routes,
        *workers.routes,
        *workflows.routes,
        *runs.routes,
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


async def http_error(request: Request, error: Exception) -> Response:
    status = error.status_code if isinstance(error, HTTPException) else 500
    if status == 404:
        return error_page(request, 404, "Not found", "There is no page at this address.")
    detail = error.detail if isinstance(error, HTTPException) else ""
    return error_page(request, status, "Cannot do that", str(detail))


async def server_error(request: Request, error: Exception) -> Response:
    """A bug: the traceback goes to the log (Starlette raises it on), the
    browser gets a page that shows nothing of it."""
    return error_page(
        request,
        500,
        "Something went wrong",
        "The server could not show this page; its log says why. Try again, or go back.",
    )
