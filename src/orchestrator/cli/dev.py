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
from orchestrator.worker.demo import demo_worker

log = logging.getLogger("orchestrator.dev")

DEV_ADMIN_USERNAME = "admin"
DEV_ADMIN_PASSWORD = "orchestrator-dev"
DEV_HTTP_PORT = 8080


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
    with signals(stop):
        try:
            port = await server.start()
            admin = await server.accounts.get_user_by_name(settings.admin_username or "")
            secret, _ = await server.accounts.api_tokens.create(
                Identity(user_id=admin.id, role=admin.role), "dev demo worker", "worker", 0
            )
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
            worker.stop(grace=settings.shutdown_grace_seconds)
            await running
        finally:
            await server.stop()
