"""Alembic environment: migrates over the connection that Database.migrate passes in."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from flowport.storage import models  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through flowport.storage.Database.migrate()")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite cannot ALTER most things; batch mode recreates the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
