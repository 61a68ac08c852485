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
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        return error_page(request, 404, "Not found", "There is no page at this address.")
    return error_page(request, error.status_code, "Cannot do that", str(error.detail))
