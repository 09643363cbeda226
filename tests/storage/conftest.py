"""Fixtures: a fresh, migrated database per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.ids import random_token
from flowport.storage import Account, Database, get_or_create_account


@dataclass(frozen=True)
class Target:
    """Where a test's database lives; `open()` connects to it again, as after a restart."""

    url: str
    connect_args: dict[str, Any] = field(default_factory=dict)

    def open(self) -> Database:
        return Database.connect(self.url, connect_args=self.connect_args)


def _postgres_schema(url: str) -> Iterator[Target]:
    # A schema per test, found through search_path, so tests never share tables.
    schema = f"test_{random_token(12).lower()}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield Target(url, {"options": f"-c search_path={schema}"})
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


# Narrows a test taking `db` to SQLite's file (the `target` parameter), for behaviour that
# only SQLite has.
SQLITE_ONLY = pytest.mark.parametrize("target", ["sqlite"], indirect=True)


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "sqlite":
        # A subdirectory that does not exist yet: Database.connect creates it.
        yield Target(f"sqlite:///{tmp_path / 'data' / 'flowport.db'}")
    else:
        yield from _postgres_schema(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def db(target: Target) -> AsyncIterator[Database]:
    database = target.open()
    await database.migrate()
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def session(db: Database) -> AsyncIterator[AsyncSession]:
    async with db.session() as session:
        yield session


@pytest.fixture
async def account(session: AsyncSession) -> Account:
    return await get_or_create_account(session, name="acme")


@pytest.fixture
async def other_account(session: AsyncSession) -> Account:
    return await get_or_create_account(session, name="globex")
