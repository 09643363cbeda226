"""The database handle: URLs, migrations, time zones and surviving a restart."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlmodel import SQLModel

from flowport.storage import (
    Database,
    Workflow,
    create_workflow,
    get_account,
    get_or_create_account,
    get_workflow,
)
from flowport.storage.database import alembic_config, normalize_url

from .conftest import SQLITE_ONLY, Target


@pytest.mark.parametrize(
    ("url", "async_driver", "sync_driver"),
    [
        ("sqlite:///data/f.db", "sqlite+aiosqlite", "sqlite"),
        ("sqlite+aiosqlite:///data/f.db", "sqlite+aiosqlite", "sqlite"),
        ("postgresql://u:p@h/db", "postgresql+psycopg", "postgresql+psycopg"),
        ("postgres://u:p@h/db", "postgresql+psycopg", "postgresql+psycopg"),
        ("postgresql+psycopg2://u:p@h/db", "postgresql+psycopg", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg", "postgresql+psycopg"),
        ("postgresql+asyncpg://u:p@h/db", "postgresql+asyncpg", "postgresql+psycopg"),
    ],
)
def test_urls_get_drivers_that_flowport_ships(url: str, async_driver: str, sync_driver: str):
    async_url, sync_url = normalize_url(url)
    assert (async_url.drivername, sync_url.drivername) == (async_driver, sync_driver)
    assert async_url.database == sync_url.database
    assert async_url.password == sync_url.password


def test_unsupported_url_is_refused():
    with pytest.raises(ValueError, match="mysql"):
        normalize_url("mysql://u@h/db")


async def test_repr_hides_the_password():
    database = Database.connect("postgresql://flowport:s3cret@db.example/flowport")
    try:
        assert "s3cret" not in repr(database)
        assert database.url.drivername == "postgresql+psycopg"
    finally:
        await database.dispose()


def _schema(connection: Connection) -> dict[str, list[str]]:
    inspector = inspect(connection)
    return {
        table: sorted(column["name"] for column in inspector.get_columns(table))
        + sorted(str(index["name"]) for index in inspector.get_indexes(table))
        for table in inspector.get_table_names()
    }


async def test_migrations_create_the_schema_and_a_second_run_changes_nothing(db: Database):
    async with db.engine.connect() as connection:
        first = await connection.run_sync(_schema)
        version = (await connection.execute(text("SELECT version_num FROM alembic_version"))).all()
    # On PostgreSQL, procrastinate's schema is there too: the job queue's.
    assert {table for table in first if _ours(table, "table", None)} == {
        *SQLModel.metadata.tables,
        "alembic_version",
    }
    if db.url.get_backend_name() == "postgresql":
        assert "procrastinate_jobs" in first
    assert version == [(ScriptDirectory.from_config(alembic_config()).get_current_head(),)]

    await db.migrate()
    async with db.engine.connect() as connection:
        assert await connection.run_sync(_schema) == first


def _ours(name: str | None, type_: str, parent_names: object) -> bool:
    """procrastinate's tables (PostgreSQL's job queue) are its own, not the models'."""
    return not (name or "").startswith("procrastinate")


async def test_migrations_match_the_models(db: Database):
    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": _ours}
        )
        return list(compare_metadata(context, SQLModel.metadata))

    async with db.engine.connect() as connection:
        assert await connection.run_sync(differences) == []


@SQLITE_ONLY
async def test_sqlite_connections_enforce_foreign_keys_and_use_wal(db: Database):
    async with db.engine.connect() as connection:
        assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await connection.execute(text("PRAGMA busy_timeout"))).scalar() == 5000


async def test_timestamps_come_back_timezone_aware_utc(db: Database):
    async with db.session() as session:
        account = await get_or_create_account(session, name="acme")
    async with db.session() as session:
        loaded = await get_account(session, account_id=account.id)
    assert loaded.created_at.tzinfo is not None
    assert loaded.created_at.utcoffset() == UTC.utcoffset(None)
    assert loaded.created_at == account.created_at


async def test_data_survives_a_restart(target: Target):
    database = target.open()
    await database.migrate()
    async with database.session() as session:
        account = await get_or_create_account(session, name="acme")
        workflow = await create_workflow(
            session, account_id=account.id, name="BMI", visibility="public", definition={"a": 1}
        )
    await database.dispose()

    reopened = target.open()
    try:
        await reopened.migrate()
        async with reopened.session() as session:
            assert (await get_or_create_account(session, name="acme")).id == account.id
            assert (await get_account(session, account_id=account.id)).name == "acme"
            loaded = await get_workflow(session, account_id=account.id, workflow_id=workflow.id)
        assert (loaded.name, loaded.draft) == ("BMI", {"a": 1})
    finally:
        await reopened.dispose()


async def test_processes_migrating_at_once_do_not_collide(target: Target):
    # The service and the CLI may both start on a fresh database.
    databases = [target.open() for _ in range(3)]
    try:
        await asyncio.gather(*(database.migrate() for database in databases))
        async with databases[0].session() as session:
            assert (await get_or_create_account(session, name="acme")).name == "acme"
    finally:
        for database in databases:
            await database.dispose()


async def test_a_database_of_the_first_release_upgrades_and_keeps_its_data(target: Target):
    old = target.open()
    await old.migrate("0001")
    # The rows alone: today's models have columns and tables the first release lacks.
    async with old.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO accounts (id, name, created_at) "
                "VALUES ('acct_acme', 'acme', '2026-01-01 00:00:00')"
            )
        )
    async with old.session() as session:
        workflow = Workflow(account_id="acct_acme", name="BMI", draft={"a": 1})
        session.add(workflow)
        await session.commit()
    async with old.engine.connect() as connection:
        assert "session_turns" not in await connection.run_sync(_schema)
    await old.dispose()

    upgraded = target.open()
    try:
        await upgraded.migrate()
        async with upgraded.session() as session:
            loaded = await get_workflow(session, account_id="acct_acme", workflow_id=workflow.id)
            account = await get_account(session, account_id="acct_acme")
        assert loaded.draft == {"a": 1}
        assert account.allowed_origins == []
        async with upgraded.engine.connect() as connection:
            assert "session_turns" in await connection.run_sync(_schema)
    finally:
        await upgraded.dispose()


async def test_a_connection_returned_inside_a_transaction_is_rolled_back(tmp_path) -> None:
    # SQLite's pool skips the blanket rollback on return (a round trip per write) and rolls
    # back only a connection still inside a transaction: what it wrote is undone, and the
    # write lock it held is released for the next user.
    db = Database.connect(f"sqlite:///{tmp_path / 'f.db'}")
    await db.migrate()
    try:
        async with db.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            await driver.execute(
                "INSERT INTO accounts (id, name, created_at) "
                "VALUES ('acct_x', 'left open', '2026-01-01 00:00:00')"
            )
            assert driver.in_transaction
        async with db.session() as session:
            assert await get_or_create_account(session, name="after") is not None
            names = (await session.exec(text("SELECT name FROM accounts"))).all()  # type: ignore[call-overload]
        assert [tuple(row) for row in names] == [("after",)]
    finally:
        await db.dispose()


async def test_a_process_opening_a_file_another_holds_waits_for_it(tmp_path) -> None:
    # Switching a fresh file to WAL needs it to itself: a connection waits for another
    # process (here a plain connection) that holds it, rather than failing "locked".
    path = tmp_path / "f.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    released = threading.Timer(0.5, holder.execute, ("COMMIT",))
    released.start()
    db = Database.connect(f"sqlite:///{path}")
    try:
        async with db.engine.connect() as connection:
            mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
        assert mode == "wal"
    finally:
        released.join()
        holder.close()
        await db.dispose()
