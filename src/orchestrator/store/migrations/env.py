"""Alembic environment. Migrations run on a connection handed over by
`orchestrator.store.migrate` (never from alembic.ini), inside its transaction;
SQLite gets batch mode so ALTERs work there."""

from __future__ import annotations

from alembic import context

from orchestrator.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
