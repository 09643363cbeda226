"""Fixtures for the engine tests: a fake LLM provider and a fake HTTP API on real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from flowport.engine.llm import OpenAiChat
from flowport.settings import Settings
from tests.fakes.fake_http import FakeHttp
from tests.fakes.fake_llm import FakeLlm


@pytest.fixture
def fake_llm() -> Iterator[FakeLlm]:
    with FakeLlm() as fake:
        yield fake


@pytest.fixture
async def llm(fake_llm: FakeLlm) -> AsyncIterator[OpenAiChat]:
    client = OpenAiChat(Settings(llm_base_url=fake_llm.base_url, llm_api_key="sk-test"))
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def fake_http_server() -> Iterator[FakeHttp]:
    with FakeHttp() as fake:
        yield fake


@pytest.fixture
def fake_http(fake_http_server: FakeHttp) -> Iterator[FakeHttp]:
    """A local HTTP API; the engine tests' fetch policy allows 127.0.0.1."""
    fake_http_server.reset()
    yield fake_http_server
    fake_http_server.reset()
