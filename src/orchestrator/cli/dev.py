"""`orchestrator dev`: a server, a demo worker and an admin account in one
process, for a first look. Binds to 127.0.0.1 unless told otherwise, since
the admin password is a well-known one unless you set your own."""

from __future__ import annotations

import asyncio
import logging
import os

import typer

from orchestrator.auth.identity import Identity
from orchestrator.config import Settings
from orchestrator.server import Server, signals
from orchestrator.worker import Worker
from orchestrator.worker.demo import demo_worker

log = logging.getLogger("orchestrator.dev")

DEV_ADMIN_USERNAME = "admin"
DEV_ADMIN_PASSWORD = "orchestrator-dev"
DEV_HTTP_PORT = 8080
DEV_TOKEN_NAME = "dev demo worker"
HAND_BACK_SECONDS = 1.0


def dev_environment() -> None:
    """Defaults for a first look; variables already set win."""
    os.environ.setdefault("ORCHESTRATOR_HOST", "127.0.0.1")
    os.environ.setdefault("ORCHESTRATOR_HTTP_PORT", str(DEV_HTTP_PORT))
    if "ORCHESTRATOR_ADMIN_USERNAME" not in os.environ:
        os.environ["ORCHESTRATOR_ADMIN_USERNAME"] = DEV_ADMIN_USERNAME
        os.environ.setdefault("ORCHESTRATOR_ADMIN_PASSWORD", DEV_ADMIN_PASSWORD)


async def run_dev(settings: Settings, slots: int) -> None:
    stop = asyncio.Event()
    server = Server(settings)
    worker: Worker | None = None
    running: asyncio.Task[None] | None = None
    # The demo worker's grace at shutdown ends before the server's, so what it
    # has not finished by then is handed back while the server still listens.
    grace = max(0.0, settings.shutdown_grace_seconds - HAND_BACK_SECONDS)
    with signals(stop):
        try:
            port = await server.start()
            secret = await _worker_token(server, settings.admin_username or "")
            worker = demo_worker(name="dev-demo-worker", slots=slots)
            running = asyncio.create_task(
                worker.run(url=f"127.0.0.1:{port}", token=secret), name="demo-worker"
            )
            password = settings.admin_password.get_secret_value() if settings.admin_password else ""
            typer.echo(
                f"\nOrchestrator dev server on {settings.host}:{port} with a demo worker "
                f"(echo, sleep, fail).\nLog in: orchestrator login --username "
                f"{settings.admin_username}   (password: {password})\n"
                f"export ORCHESTRATOR_URL={settings.host}:{port}\n"
                f"Dashboard: http://{settings.host}:{server.http_port}/ (same account)\n"
                f"Metrics: http://{settings.host}:{server.http_port}/metrics\nCtrl+C stops.\n",
                err=True,
            )
            await stop.wait()
        finally:

            def stop_worker() -> None:
                if worker is not None:
                    worker.stop(grace)

            # The documented order: health NOT_SERVING, then the workers are
            # told to drain, the demo worker among them.
            await server.stop(on_drain=stop_worker)
            if running is not None:
                await running
    log.info("shutdown complete")


async def _worker_token(server: Server, admin_username: str) -> str:
    """A new token for the demo worker; the previous starts' are revoked
    (their secrets were never kept, so they cannot be reused)."""
    admin = await server.accounts.get_user_by_name(admin_username)
    caller = Identity(user_id=admin.id, role=admin.role)
    tokens = server.accounts.api_tokens
    for token in await tokens.list(caller):
        if token.name == DEV_TOKEN_NAME and token.owner_id == admin.id and not token.revoked_at:
            await tokens.revoke(caller, token.id)
    secret, _ = await tokens.create(caller, DEV_TOKEN_NAME, "worker", 0)
    return secret
