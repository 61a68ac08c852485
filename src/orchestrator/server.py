"""The server's lifecycle: ordered start-up, graceful shutdown (DESIGN §6)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import grpc
from grpc import aio
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2 as grpc_health_pb2
from grpc_health.v1 import health_pb2_grpc as grpc_health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from orchestrator import tracing, web
from orchestrator.auth import AuthGate, JwtManager
from orchestrator.auth.passwords import LoginQueue
from orchestrator.config import Settings
from orchestrator.engine.accounts import Accounts
from orchestrator.engine.credentials import CredentialWatch
from orchestrator.engine.overview import OverviewReader
from orchestrator.engine.runtime import Engine
from orchestrator.engine.status import StatusReader
from orchestrator.engine.throttle import LoginThrottle
from orchestrator.engine.waiting import WaitReasons
from orchestrator.http import HttpListener, Tls, bind
from orchestrator.http import app as http_app
from orchestrator.metrics import Metrics
from orchestrator.proto import (
    auth_pb2,
    auth_pb2_grpc,
    health_pb2,
    health_pb2_grpc,
    schedules_pb2,
    schedules_pb2_grpc,
    status_pb2,
    status_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)
from orchestrator.services.auth import AuthService
from orchestrator.services.errors import ErrorInterceptor
from orchestrator.services.health import HealthService, StandardHealth
from orchestrator.services.schedules import ScheduleService
from orchestrator.services.shutdown import Shutdown
from orchestrator.services.status import StatusService
from orchestrator.services.streams import Streams
from orchestrator.services.tasks import TaskService
from orchestrator.services.workers import WorkerService
from orchestrator.services.workflows import WorkflowService
from orchestrator.store import Database, upgrade
from orchestrator.web import templating
from orchestrator.web.session import SessionCookies

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("orchestrator.server")

SERVICE_NAMES = tuple(
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in (
        (health_pb2, "HealthService"),
        (auth_pb2, "AuthService"),
        (tasks_pb2, "TaskService"),
        (workflows_pb2, "WorkflowService"),
        (workers_pb2, "WorkerService"),
        (schedules_pb2, "ScheduleService"),
        (status_pb2, "StatusService"),
    )
)
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
ANNOUNCE_SECONDS = 0.2
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # A second server on a taken port must fail, not share it.
    ("grpc.so_reuseport", 0),
    # Per connection: one client cannot take every stream. A client of more
    # streams opens more connections (channels that do not share one).
    ("grpc.max_concurrent_streams", 1000),
    # Calls that arrived but that the event loop has not picked up yet. Past
    # the soft limit (default 1,000) gRPC refuses them at random, past the
    # hard one (3,000) all of them, and it cancels those left waiting past the
    # time limit (30 s), logging none of it: a burst of 10,000 streams opened
    # at once must wait its turn instead.
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 40_000),
    ("grpc.server_max_unrequested_time_in_server", 120),
    # Over gRPC's 8 KiB soft limit, headers are refused at random before the
    # gate sees them; an oversized token must get the gate's clear answer.
    ("grpc.max_metadata_size", 32 * 1024),
    ("grpc.absolute_max_metadata_size", 64 * 1024),
    # Ping idle clients so a vanished worker is noticed, and refuse clients
    # that ping more often than every 10 s.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
]


class Server:
    """One replica: database, engine, gRPC server. `start()` then `stop()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port: int | None = None
        self._shutdown = Shutdown()
        self._database: Database | None = None
        self._grpc: aio.Server | None = None
        self._health: HealthService | None = None
        self._engine: Engine | None = None
        self._grpc_health: StandardHealth | None = None
        self._tracing: TracerProvider | None = None
        self._http: HttpListener | None = None
        self.http_port: int | None = None

    async def start(self) -> int:
        settings = self.settings
        self._tracing = tracing.configure("orchestrator")
        if settings.uses_default_jwt_secret:
            log.warning(
                "JWT_SECRET is the built-in development secret: anyone can forge tokens. "
                "Set JWT_SECRET to a long random value before exposing this server."
            )
        metrics = None
        host = settings.host.removeprefix("[").removesuffix("]")
        if settings.port:
            # A taken port stops us here, before the database is touched. gRPC
            # binds a socket of its own later (it cannot adopt one), so the
            # probe is closed at once.
            bind(host, settings.port, "ORCHESTRATOR_PORT").close()
        if settings.http_port is not None:
            # Bound before anything else, so a taken port stops us here.
            tls = (
                Tls(
                    str(settings.tls_cert_file),
                    str(settings.tls_key_file),
                    str(settings.tls_client_ca_file) if settings.tls_client_ca_file else None,
                )
                if settings.tls_cert_file and settings.tls_key_file
                else None
            )
            self._http = HttpListener(bind(host, settings.http_port, "ORCHESTRATOR_HTTP_PORT"), tls)
            metrics = Metrics(settings.replica_id)
        log.info("opening database", extra={"dialect": _dialect(settings.database_url)})
        database = Database(
            settings.database_url,
            pool_size=settings.max_connections,
            replica_id=settings.replica_id,
        )
        self._database = database
        if settings.auto_migrate:
            revision = await upgrade(database)
            log.info("database migrated", extra={"revision": revision})
        else:
            log.info("migrations skipped (ORCHESTRATOR_AUTO_MIGRATE=false)")
        jwt = JwtManager(settings.jwt_secret.get_secret_value(), settings.jwt_expiration_seconds)
        # A shared address (NAT, a proxy) gets more room than a single name.
        throttle = LoginThrottle(
            database,
            per_user=settings.login_max_failures,
            per_peer=settings.login_max_failures * 4,
            window_seconds=settings.login_window_seconds,
        )
        watch = CredentialWatch(database, settings.replica_id)
        accounts = Accounts(
            database,
            jwt,
            settings.refresh_token_expiration_seconds,
            throttle,
            watch,
            login_queue=LoginQueue(settings.login_hash_queue),
            refresh_reuse_seconds=settings.refresh_reuse_seconds,
        )
        self.accounts = accounts
        if settings.admin_username and settings.admin_password:
            await accounts.ensure_admin(
                settings.admin_username, settings.admin_password.get_secret_value()
            )

        server = aio.server(
            interceptors=[
                # Outermost: it sees the code every call ends with.
                *([metrics.interceptor()] if metrics is not None else []),
                *tracing.server_interceptors(self._tracing),
                ErrorInterceptor(),
                AuthGate(accounts.authenticate),
            ],
            options=SERVER_OPTIONS,
        )
        self._health = HealthService(database, self._shutdown, settings.replica_id)
        health_pb2_grpc.add_HealthServiceServicer_to_server(self._health, server)
        auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthService(accounts), server)
        engine = Engine(database, settings, watch)
        if metrics is not None:
            metrics.watch(engine, database)
        self._engine = engine
        streams = Streams(self._shutdown, watch)
        waiting = WaitReasons(database, engine.dispatcher)
        tasks_pb2_grpc.add_TaskServiceServicer_to_server(
            TaskService(
                engine.tasks,
                streams,
                settings.default_max_attempts,
                waiting,
            ),
            server,
        )
        workflows_pb2_grpc.add_WorkflowServiceServicer_to_server(
            WorkflowService(engine.workflows, streams), server
        )
        schedules_pb2_grpc.add_ScheduleServiceServicer_to_server(
            ScheduleService(engine.schedules, settings.default_max_attempts), server
        )
        workers_pb2_grpc.add_WorkerServiceServicer_to_server(
            WorkerService(engine.dispatcher, settings.heartbeat_seconds, settings.lease_seconds),
            server,
        )
        status = StatusReader(database, engine.dispatcher, settings.replica_id)
        status_pb2_grpc.add_StatusServiceServicer_to_server(StatusService(status), server)
        self._grpc_health = StandardHealth(self._health, self._shutdown, SERVICE_NAMES)
        grpc_health_pb2_grpc.add_HealthServicer_to_server(self._grpc_health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, grpc_health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        try:
            credentials = _credentials(settings)
            if credentials is None:
                self.port = server.add_insecure_port(settings.address)
            else:
                self.port = server.add_secure_port(settings.address, credentials)
        except RuntimeError as exc:
            raise OSError(f"cannot bind {settings.address}: {exc}") from None
        engine.start()
        log.info("background loops started")
        await server.start()
        self._grpc = server
        log.info(
            f"listening on {settings.host}:{self.port}",
            extra={"tls": "mutual" if settings.tls_client_ca_file else bool(credentials)},
        )
        if self._http is not None and metrics is not None:
            dashboard = web.Dashboard(
                engine=engine,
                accounts=accounts,
                credentials=watch,
                status=status,
                waiting=waiting,
                overview=OverviewReader(database),
                cookies=SessionCookies(
                    settings.jwt_secret.get_secret_value(),
                    settings.refresh_token_expiration_seconds,
                ),
                templates=templating.environment(),
                default_max_attempts=settings.default_max_attempts,
            )
            await self._http.start(http_app(metrics, dashboard))
            self.http_port = self._http.port
            scheme = "https" if credentials else "http"
            base = f"{scheme}://{settings.host}:{self.http_port}"
            log.info(f"metrics on {base}/metrics")
            log.info(f"dashboard on {base}/")
        for name in ("", *SERVICE_NAMES):
            await self._grpc_health.set(name, grpc_health_pb2.HealthCheckResponse.SERVING)
        log.info("health SERVING")
        return self.port

    async def stop(self, on_drain: Callable[[], None] | None = None) -> None:
        """Shut down in the documented order (DESIGN §6). `on_drain` runs once
        the workers are told to drain: `orchestrator dev` stops its own
        worker then, so that it hands its tasks back and does not reconnect."""
        grace = self.settings.shutdown_grace_seconds
        if self._health is not None:
            self._health.set_not_serving()
        if self._grpc_health is not None:
            await self._grpc_health.enter_graceful_shutdown()
        log.info("shutdown: health NOT_SERVING")
        if self._grpc is not None:
            # Calls that reached the server just before the signal may not be
            # picked up by the event loop yet, and gRPC cancels those at stop
            # instead of letting them finish: give them a moment (load
            # balancers watching health get it too).
            await asyncio.sleep(min(ANNOUNCE_SECONDS, grace))
            stopping = asyncio.create_task(self._grpc.stop(grace), name="grpc-stop")
            log.info("shutdown: refusing new calls; in-flight calls have %ss", grace)
            self._shutdown.begin()
            log.info("shutdown: open streams ended with UNAVAILABLE")
            if self._engine is not None:
                self._engine.dispatcher.drain("server shutting down")
                log.info("shutdown: workers told to drain")
            if on_drain is not None:
                on_drain()
            await stopping
            log.info("shutdown: gRPC server stopped")
        if self._http is not None:
            if self._engine is not None:
                # Live pages end their streams instead of holding the listener open.
                self._engine.changes.close()
            await self._http.stop()
            log.info("shutdown: HTTP listener stopped")
        if self._engine is not None:
            await self._engine.stop()
            log.info("shutdown: background loops stopped")
        if self._database is not None:
            await self._database.close()
            log.info("shutdown: database closed")
        if self._tracing is not None:
            # Exports what is still buffered; it blocks on the collector.
            await asyncio.to_thread(self._tracing.shutdown)
            log.info("shutdown: traces flushed")


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS when a certificate is configured; mutual TLS when a client CA is too."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _dialect(database_url: str) -> str:
    return database_url.split(":", 1)[0]


@contextmanager
def signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM or Ctrl+C asks for a graceful stop; a second one exits at once.
    The previous handlers are put back on exit."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(130)
        log.info("%s received: shutting down", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def serve(settings: Settings) -> None:
    """Run one replica until SIGTERM or Ctrl+C."""
    stop = asyncio.Event()
    server = Server(settings)
    with signals(stop):
        try:
            await server.start()
            await stop.wait()
        finally:
            await server.stop()
    log.info("shutdown complete")


__all__ = ["Server", "serve"]
