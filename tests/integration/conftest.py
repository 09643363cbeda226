"""Fixtures: one real stack per test session, a fresh account and key for every test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.fakes.fake_http import FakeHttp
from tests.fakes.fake_llm import FakeLlm
from tests.integration import transitions
from tests.integration.client import Api
from tests.integration.stack import Stack

# The session stack's content policy: inputs or outputs holding these are refused with 409.
BLOCKED_WORDS = ("forbiddenword", "禁词", "炸弹")
FETCH_MAX_BYTES = 100_000
# How long the session stack's streams go on after their client left, nobody following.
RESUME_S = 1.0
WEBHOOK_BACKOFF_S = 0.2


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL database of its own on the tests' server, dropped afterwards: what
    replicas of one test share."""
    name = f"flowport_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def fake_http_server() -> Iterator[FakeHttp]:
    server = FakeHttp()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_http(fake_http_server: FakeHttp) -> Iterator[FakeHttp]:
    fake_http_server.reset()
    yield fake_http_server
    fake_http_server.release()


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLlm]:
    fake = FakeLlm()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_llm(fake_llm_server: FakeLlm) -> Iterator[FakeLlm]:
    """The fake LLM, echoing by default; a test may script it."""
    fake_llm_server.reset()
    yield fake_llm_server
    fake_llm_server.reset()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, fake_llm_server: FakeLlm) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("stack")
    policy = data_dir / "blocked-words.txt"
    policy.write_text("\n".join(BLOCKED_WORDS) + "\n", encoding="utf-8")
    database = f"sqlite:///{data_dir / 'flowport.db'}"
    # Every status change the suite makes on this stack is recorded, and checked at its end.
    transitions.install(database)
    stack = Stack(
        data_dir=data_dir,
        database_url=database,
        llm_base_url=fake_llm_server.base_url,
        extra_env={
            "FLOWPORT_CONTENT_POLICY": str(policy),
            # The fake file server is on loopback; every other private address stays refused.
            "FLOWPORT_FETCH_ALLOW": "127.0.0.1",
            "FLOWPORT_FETCH_TIMEOUT_S": "2",
            "FLOWPORT_FETCH_MAX_BYTES": str(FETCH_MAX_BYTES),
            # A stream whose client left stops soon when nobody follows it (see RESUME_S).
            "FLOWPORT_STREAM_RESUME_S": str(RESUME_S),
            # A failed webhook delivery is tried again within the test's patience.
            "FLOWPORT_WEBHOOK_BACKOFF_S": str(WEBHOOK_BACKOFF_S),
        },
    )
    stack.start()
    yield stack
    stack.stop()
    assert transitions.backwards(database) == []


@pytest.fixture
def api(stack: Stack) -> Iterator[Api]:
    """A client with an admin key of its own account: no test sees another's data."""
    account, key = stack.create_key()
    with Api(stack.base_url, key, account=account) as client:
        yield client
