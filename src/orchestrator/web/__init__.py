"""The web dashboard, served on the HTTP listener beside /metrics: pages
rendered on the server from the same engine the gRPC services call, under
the same rules, and kept live over server-sent events."""

from orchestrator.web.app import http_error, routes, server_error
from orchestrator.web.view import Dashboard

__all__ = ["Dashboard", "http_error", "routes", "server_error"]
