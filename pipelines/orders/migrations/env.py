"""Alembic's environment for the event store: always run from :func:`pipelines.orders.database.migrate`,
which hands over an open connection (no alembic.ini, no URL in a file)."""

from __future__ import annotations

from alembic import context

from pipelines.orders.tables import metadata

connection = context.config.attributes["connection"]
# render_as_batch: SQLite alters a table by copying it, which batch mode does for later revisions.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
