"""/workers: the workers that may run the caller's tasks, live."""

from __future__ import annotations

from typing import Any

from orchestrator.web.routing import LivePage
from orchestrator.web.view import View


async def _context(view: View) -> dict[str, Any]:
    return {"workers": view.dashboard.status.workers_for(view.caller)}


routes = LivePage("/workers", "workers.html", _context).routes()
