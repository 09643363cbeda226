"""Fixtures every test folder shares: the PostgreSQL and Redis servers (tests/services.py),
started only when a test asks for them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import services


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server's URL (psycopg's form; Flowport takes it as DATABASE_URL too)."""
    with services.postgres() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with services.redis() as url:
        yield url
