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
import ssl
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from orchestrator import web
from orchestrator.metrics import Metrics
from orchestrator.web.limits import BodyLimit
from orchestrator.web.security import SecurityHeaders

log = logging.getLogger("orchestrator.http")

# Requests still being answered at shutdown (a scrape, a page) get this
# long; live pages end their streams before.
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


def app(metrics: Metrics, dashboard: web.Dashboard) -> ASGIApp:
    async def scrape(request: Request) -> Response:
        body, content_type = await metrics.render(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    application = Starlette(
        routes=[Route("/metrics", scrape, methods=["GET"]), *web.routes()],
        exception_handlers={HTTPException: web.http_error, Exception: web.server_error},
    )
    application.state.dashboard = dashboard
    # Outside Starlette's own error handling, so an answer to a bug carries
    # the headers too.
    return SecurityHeaders(BodyLimit(application))


@dataclass(frozen=True)
class Tls:
    """The gRPC port's certificate, so the dashboard's cookies are Secure;
    with a client CA, browsers and scrapers must show a certificate too."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


class HttpListener:
    def __init__(self, sock: socket.socket, tls: Tls | None = None) -> None:
        self._socket = sock
        self._tls = tls
        self.port: int = sock.getsockname()[1]
        self._server: uvicorn.Server | None = None

    async def start(self, application: ASGIApp) -> None:
        config = uvicorn.Config(
            application,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=SHUTDOWN_SECONDS,
        )
        if self._tls is not None:
            config.ssl_certfile = self._tls.cert_file
            config.ssl_keyfile = self._tls.key_file
            if self._tls.client_ca_file is not None:
                config.ssl_ca_certs = self._tls.client_ca_file
                config.ssl_cert_reqs = ssl.CERT_REQUIRED
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
