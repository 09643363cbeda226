"""Fixtures of the unit tests that need a database: a migrated SQLite file of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowport.storage import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database.connect(f"sqlite:///{tmp_path / 'flowport.db'}")
    await database.migrate()
    try:
        yield database
    finally:
        await database.dispose()
