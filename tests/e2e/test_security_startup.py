"""Secrets at start-up: with ORCHESTRATOR_ENV=production, `python -m
orchestrator serve` refuses the built-in JWT_SECRET or one shorter than 32
bytes (exit 2, one line on stderr naming JWT_SECRET, the value never shown),
and starts with a long one. In development the built-in secret is allowed,
loudly.

The refusals happen before any database is opened; they are given an SQLite
path that must stay unused.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from orchestrator.config import DEFAULT_JWT_SECRET
from orchestrator.proto import health_pb2, health_pb2_grpc
from tests.support.grpc import channel
from tests.support.server import ServerProcess

SHORT_SECRET = "twenty-bytes-secret!"  # 20 bytes
LONG_SECRET = "forty-bytes-of-production-secret-0123456"  # 40 bytes
assert (len(SHORT_SECRET.encode()), len(LONG_SECRET.encode())) == (20, 40)


def production(secret: str | None) -> dict[str, str | None]:
    return {"ORCHESTRATOR_ENV": "production", "JWT_SECRET": secret}


WEAK = {
    "unset": None,
    "20 bytes": SHORT_SECRET,
    "the built-in one": DEFAULT_JWT_SECRET,
}


async def test_production_refuses_a_weak_secret(tmp_path: Path) -> None:
    # All at once: each is a Python start-up and nothing more.
    processes = {
        name: ServerProcess(f"sqlite:{tmp_path}/{index}.db", production(secret))
        for index, (name, secret) in enumerate(WEAK.items())
    }
    try:
        for process in processes.values():
            process.launch()
        codes = await asyncio.gather(*(asyncio.to_thread(p.wait, 60) for p in processes.values()))
    finally:
        for process in processes.values():
            process.stop()
    for (name, secret), process, code in zip(WEAK.items(), processes.values(), codes, strict=True):
        assert code == 2, (name, process.log)
        lines = [line for line in process.lines if line.strip()]
        assert len(lines) == 1, (name, process.log)
        assert "JWT_SECRET" in lines[0], name
        assert "Traceback" not in process.log
        if secret:
            assert secret not in process.log + process.stdout, name
    left = await asyncio.to_thread(lambda: list(tmp_path.iterdir()))
    assert left == [], "a refused start opened a database"


async def test_production_starts_with_a_long_secret(database_url: str) -> None:
    with ServerProcess(database_url, production(LONG_SECRET)) as process:
        await asyncio.to_thread(process.start)
        assert process.address
        async with channel(process.address) as ch:
            reply = await health_pb2_grpc.HealthServiceStub(ch).Check(
                health_pb2.CheckRequest(), timeout=10
            )
        assert reply.status == health_pb2.HEALTH_STATUS_SERVING
        # No warning about the secret, and the secret itself is never logged.
        assert "JWT_SECRET" not in process.log
        assert LONG_SECRET not in process.log
        process.terminate()
        assert await asyncio.to_thread(process.wait, 30) == 0


async def test_development_allows_the_built_in_secret_but_says_so(tmp_path: Path) -> None:
    with ServerProcess(f"sqlite:{tmp_path}/dev.db", {"JWT_SECRET": None}) as process:
        await asyncio.to_thread(process.start)
        warnings = [line for line in process.lines if "JWT_SECRET" in line]
        assert warnings, process.log
        assert "WARNING" in warnings[0]
        assert DEFAULT_JWT_SECRET not in process.log
        process.terminate()
        assert await asyncio.to_thread(process.wait, 30) == 0
