"""Fixtures: a fresh, migrated database per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
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

POSTGRES_URL = os.environ.get(
    "FLOWPORT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@dataclass(frozen=True)
class Target:
    """Where a test's database lives; `open()` connects to it again, as after a restart."""

    url: str
    connect_args: dict[str, Any] = field(default_factory=dict)

    def open(self) -> Database:
        return Database.connect(self.url, connect_args=self.connect_args)


def _postgres_schema() -> Iterator[Target]:
    # A schema per test, found through search_path, so tests never share tables.
    schema = f"test_{random_token(12).lower()}"
    admin_url = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield Target(POSTGRES_URL, {"options": f"-c search_path={schema}"})
    finally:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


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
        yield from _postgres_schema()


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
