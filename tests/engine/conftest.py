"""Fixtures for the engine tests: a fake LLM provider on a real socket and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from flowport.engine.llm import OpenAiChat
from flowport.settings import Settings
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
