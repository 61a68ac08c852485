"""Integration fixtures: a migrated database of the selected backend, and
accounts on it with the bootstrap admin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orchestrator.auth.passwords import LoginQueue
from orchestrator.auth.tokens import JwtManager
from orchestrator.engine.accounts import Accounts
from orchestrator.engine.credentials import CredentialWatch
from orchestrator.engine.throttle import LoginThrottle
from orchestrator.store import Database, upgrade

ADMIN_PASSWORD = "admin-password-1"
JWT_SECRET = "integration-test-secret-" + "x" * 20


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """An open Database at the head revision, closed after the test."""
    db = Database(database_url)
    try:
        await upgrade(db)
        yield db
    finally:
        await db.close()


@pytest.fixture
async def accounts(database: Database) -> Accounts:
    """Accounts with an admin ("admin", ADMIN_PASSWORD). Throttling failed
    logins has its own tests: here it must never interfere."""
    accounts = Accounts(
        database,
        JwtManager(JWT_SECRET, 900),
        3600,
        LoginThrottle(database, per_user=1000, per_peer=1000, window_seconds=60),
        CredentialWatch(database, "test"),
        login_queue=LoginQueue(100),
        refresh_reuse_seconds=5,
    )
    await accounts.ensure_admin("admin", ADMIN_PASSWORD)
    return accounts
