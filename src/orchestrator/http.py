"""The server's one HTTP listener (ORCHESTRATOR_HTTP_PORT): Prometheus
metrics at /metrics and the web dashboard at /.

A Starlette app served by uvicorn in the server's own event loop, not a
thread: handlers read the engine's state without locks. Its socket is bound
first thing at start-up, so a taken port stops the server before the
database is opened. uvicorn's `serve()` would install its own signal
handlers over the server's; its start-up and shutdown steps are called
instead, and the server's lifecycle drives them.
"""

from __future__ import annotations

import logging
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator import web
from orchestrator.metrics import Metrics
from orchestrator.web.security import SecurityHeaders

log = logging.getLogger("orchestrator.http")

# Scrapes that are still being answered at shutdown get this long.
SHUTDOWN_SECONDS = 2


class PortInUse(OSError):
    """A port the server must listen on is taken (exit code 2)."""


def bind(host: str, port: int, variable: str) -> socket.socket:
    """A listening socket on host:port, or PortInUse naming the variable."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # Lets a restarted server bind while old connections sit in TIME_WAIT;
    # on Linux it never lets two listeners share a port.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        reason = error.strerror or str(error)
        raise PortInUse(f"cannot listen on {host}:{port} ({variable}): {reason}") from None
    sock.setblocking(False)
    return sock


def app(metrics: Metrics, dashboard: web.Dashboard) -> Starlette:
    async def scrape(request: Request) -> Response:
        body, content_type = await metrics.render(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    application = Starlette(
        routes=[Route("/metrics", scrape, methods=["GET"]), *web.routes()],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={HTTPException: web.http_error},
    )
    application.state.dashboard = dashboard
    return application


class HttpListener:
    def __init__(self, sock: socket.socket, tls: tuple[str, str] | None = None) -> None:
        self._socket = sock
        # (certificate file, key file): the gRPC port's, so cookies are Secure.
        self._tls = tls
        self.port: int = sock.getsockname()[1]
        self._server: uvicorn.Server | None = None

    async def start(self, application: Starlette) -> None:
        config = uvicorn.Config(
            application,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=SHUTDOWN_SECONDS,
            ssl_certfile=self._tls[0] if self._tls else None,
            ssl_keyfile=self._tls[1] if self._tls else None,
        )
        config.load()
        server = uvicorn.Server(config)
        # What `serve()` would set before its start-up step (off: no lifespan events).
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[self._socket])
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown(sockets=[self._socket])
            self._server = None
        else:
            self._socket.close()
