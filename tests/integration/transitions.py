"""Every change of a run's status, recorded by a trigger in the database itself: tests that
start replicas on a database check afterwards that no run's status ever moved backwards.

`install` migrates the database and adds the trigger (PostgreSQL or SQLite); `backwards`
lists the transitions that left a final status, or that repeated one."""

from __future__ import annotations

import asyncio

import sqlalchemy

from flowport.storage import FINAL_STATUSES, Database

_POSTGRES = (
    "CREATE TABLE status_history (id serial PRIMARY KEY, run_id text, before text, after text)",
    """CREATE FUNCTION record_status() RETURNS trigger AS $$
       BEGIN
         IF TG_OP = 'INSERT' THEN
           INSERT INTO status_history (run_id, before, after) VALUES (NEW.id, NULL, NEW.status);
         ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
           INSERT INTO status_history (run_id, before, after)
             VALUES (NEW.id, OLD.status, NEW.status);
         END IF;
         RETURN NEW;
       END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER runs_status AFTER INSERT OR UPDATE ON runs
       FOR EACH ROW EXECUTE FUNCTION record_status()""",
)
_SQLITE = (
    """CREATE TABLE status_history (
         id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, before TEXT, after TEXT)""",
    """CREATE TRIGGER runs_status_insert AFTER INSERT ON runs BEGIN
         INSERT INTO status_history (run_id, before, after) VALUES (NEW.id, NULL, NEW.status);
       END""",
    """CREATE TRIGGER runs_status_update AFTER UPDATE OF status ON runs
       WHEN OLD.status IS NOT NEW.status BEGIN
         INSERT INTO status_history (run_id, before, after)
           VALUES (NEW.id, OLD.status, NEW.status);
       END""",
)


def install(url: str) -> None:
    """Migrates the database at `url` and starts recording every status change of its runs."""

    async def migrate() -> None:
        db = Database.connect(url)
        try:
            await db.migrate()
        finally:
            await db.dispose()

    asyncio.run(migrate())
    engine = _engine(url)
    try:
        with engine.begin() as connection:
            statements = _SQLITE if engine.dialect.name == "sqlite" else _POSTGRES
            for statement in statements:
                connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


def history(url: str) -> list[tuple[str, str | None, str]]:
    """Every (run id, status before, status after), in the order they happened."""
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT run_id, before, after FROM status_history ORDER BY id"
            )
            return [(row[0], row[1], row[2]) for row in rows]
    finally:
        engine.dispose()


def backwards(url: str) -> list[tuple[str, str | None, str]]:
    """The transitions out of a final status: none, if every run moved forward once."""
    return [change for change in history(url) if change[1] in FINAL_STATUSES]


def _engine(url: str) -> sqlalchemy.Engine:
    parsed = sqlalchemy.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sqlalchemy.create_engine(parsed)
