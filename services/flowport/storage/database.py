"""The database handle: async engine and sessions, URL normalization, Alembic migrations."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, PoolResetState
from sqlmodel.ext.asyncio.session import AsyncSession

if TYPE_CHECKING:
    from alembic.config import Config

_MIGRATIONS = Path(__file__).parent / "migrations"

# WAL lets the service and the CLI read and write one file at once.
_SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")
_MIGRATION_BUSY_TIMEOUT_S = 60.0

# Any constant: it only has to be the same in every process migrating one database.
_PG_MIGRATION_LOCK = 0x466C6F77


def normalize_url(url: str) -> tuple[URL, URL]:
    """The (async, sync) URLs of one database, each with a driver Flowport ships."""
    parsed = make_url(url)
    # Split by hand: asking SQLAlchemy would load the dialect, and `postgres` has none.
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite"), parsed.set(drivername="sqlite")
    if backend in ("postgresql", "postgres"):
        psycopg = parsed.set(drivername="postgresql+psycopg")
        if driver == "asyncpg":
            return parsed, psycopg
        return psycopg, psycopg
    raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")


def _json_text(value: Any) -> str:
    """JSON columns (a run's inputs, its nodes' outputs) as orjson writes them: the same
    values as the standard library's json, many times faster, on every run's record."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    _apply_pragmas(dbapi_connection, busy_timeout_ms=5000, extra=("PRAGMA foreign_keys=ON",))


def open_sqlite_file(path: str) -> sqlite3.Connection:
    """A connection to a SQLite file set up as the engine's are (WAL, foreign keys, busy
    timeout), for code that drives the driver itself: the recorder."""
    connection = sqlite3.connect(path)
    _set_sqlite_pragmas(connection, None)
    return connection


def _prepare_sqlite_for_migrations(dbapi_connection: Any, _record: Any) -> None:
    # A process starting while another migrates waits for it to finish, which on a loaded
    # machine can take longer than a request should ever wait.
    # No foreign_keys=ON here: batch migrations recreate tables, which enforcement would block.
    deadline = time.monotonic() + _MIGRATION_BUSY_TIMEOUT_S
    while True:
        try:
            _apply_pragmas(dbapi_connection, busy_timeout_ms=int(_MIGRATION_BUSY_TIMEOUT_S * 1000))
            break
        except sqlite3.OperationalError as error:
            # Switching a new file to WAL while another process does the same can fail at
            # once, without waiting (SQLite's deadlock avoidance): try again until then.
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    # Let the "begin" listener issue BEGIN IMMEDIATE instead of pysqlite's deferred BEGIN.
    dbapi_connection.isolation_level = None


def _apply_pragmas(
    dbapi_connection: Any, *, busy_timeout_ms: int, extra: tuple[str, ...] = ()
) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # First: switching to WAL needs the file to itself, and must wait this long for a
        # process that holds it (a migration, on a loaded machine, for seconds).
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        for pragma in (*_SQLITE_PRAGMAS, *extra):
            cursor.execute(pragma)
    finally:
        cursor.close()


def _begin_immediate(connection: Connection) -> None:
    # Takes the write lock before Alembic reads its version, so two processes migrating one
    # file run one after the other, and the DDL is transactional.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _rollback_if_in_transaction(
    dbapi_connection: Any, record: ConnectionPoolEntry, state: PoolResetState
) -> None:
    """A connection back in the pool is rolled back only if it is inside a transaction:
    after a commit, the pool's unconditional rollback was one more round trip to aiosqlite's
    thread on every write of the run path."""
    driver = record.driver_connection
    if not state.terminate_only and driver is not None and driver.in_transaction:
        dbapi_connection.rollback()


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code: there is no alembic.ini."""
    # Imported here: `flowport serve` migrates in a short-lived child process, so the
    # serving process never holds Alembic.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


T = TypeVar("T")


class Database:
    """One database: sessions for the data functions, and its schema's migrations."""

    def __init__(self, engine: AsyncEngine, sync_url: URL, connect_args: Mapping[str, Any]):
        self._engine = engine
        self._sync_url = sync_url
        self._connect_args = dict(connect_args)
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    @classmethod
    def connect(cls, url: str, *, connect_args: Mapping[str, Any] | None = None) -> Database:
        """Creates the engine only; connections open on first use.

        `connect_args` go to the driver of both engines (e.g. psycopg's `options`).
        """
        async_url, sync_url = normalize_url(url)
        connect_args = connect_args or {}
        if async_url.get_backend_name() == "sqlite":
            # One connection: SQLite has one writer at a time, and connections of one process
            # contending for it would wait in SQLite's busy back-off (sleeps of up to 100 ms)
            # instead of queueing here for a fraction of a millisecond each.
            engine = create_async_engine(
                async_url,
                connect_args=dict(connect_args),
                json_serializer=_json_text,
                pool_size=1,
                max_overflow=0,
                pool_timeout=60,
                # Reset by _rollback_if_in_transaction instead.
                pool_reset_on_return=None,
            )
            event.listen(engine.sync_engine, "reset", _rollback_if_in_transaction)
        else:
            engine = create_async_engine(
                async_url, connect_args=dict(connect_args), json_serializer=_json_text
            )
        if engine.dialect.name == "sqlite":
            # A file database only: migrations use a second engine, which :memory: cannot share.
            if async_url.database:
                Path(async_url.database).parent.mkdir(parents=True, exist_ok=True)
            event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
        return cls(engine, sync_url, connect_args)

    @property
    def url(self) -> URL:
        return self._engine.url

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def driver_options(self) -> dict[str, Any]:
        """What the driver is given besides the URL (e.g. psycopg's `options`), for code that
        connects on its own: the job queue."""
        return dict(self._connect_args)

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Runs `work` in a session of its own to the end, even if the caller is cancelled (a
        client that went away): a transaction cut off halfway would keep its connection, and
        with it SQLite's write lock, busy. The service's request paths go through here."""

        async def whole() -> T:
            async with self.session() as session:
                return await work(session)

        return await asyncio.shield(whole())

    async def migrate(self, revision: str = "head") -> None:
        """Brings the schema to the newest revision (`alembic upgrade head`)."""
        await asyncio.to_thread(self._upgrade, revision)

    async def dispose(self) -> None:
        await self._engine.dispose()

    def _upgrade(self, revision: str) -> None:
        engine = self._migration_engine()
        try:
            with engine.begin() as connection:
                if engine.dialect.name == "postgresql":
                    # Released at commit; a second process waits, then finds nothing to do.
                    connection.exec_driver_sql(
                        f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"
                    )
                from alembic import command

                command.upgrade(alembic_config(connection), revision)
        finally:
            engine.dispose()

    def _migration_engine(self) -> Engine:
        engine = create_engine(self._sync_url, connect_args=self._connect_args, poolclass=NullPool)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _prepare_sqlite_for_migrations)
            event.listen(engine, "begin", _begin_immediate)
        return engine
