"""The OpenAI-compatible client against the fake provider: deltas, errors, configuration."""

from __future__ import annotations

import socket

import openai
import pytest

from flowport.engine.llm import Delta, OpenAiChat, create_llm_client
from flowport.errors import Unavailable, UpstreamFailed
from flowport.settings import Settings
from tests.fakes.fake_llm import FakeLlm


async def deltas(client: OpenAiChat, text: str = "hello there") -> list[Delta]:
    stream = client.stream_chat(
        messages=[{"role": "user", "content": text}], model="m", temperature=None
    )
    return [delta async for delta in stream]


async def test_default_fake_reply_echoes_in_chunks(fake_llm: FakeLlm, llm: OpenAiChat) -> None:
    got = await deltas(llm)
    assert len(got) > 2
    assert "".join(d.content for d in got) == "echo: hello there"
    assert "temperature" not in fake_llm.requests[0]


def test_no_base_url_means_no_client() -> None:
    assert create_llm_client(Settings(llm_base_url=None)) is None
    with pytest.raises(Unavailable, match="set FLOWPORT_LLM_BASE_URL"):
        OpenAiChat(Settings(llm_base_url=None))


async def test_slow_provider_times_out(fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(["late"], first_token_delay_s=2.0)
    settings = Settings(llm_base_url=fake_llm.base_url, llm_timeout_s=0.2)
    client = OpenAiChat(settings, max_retries=0)
    try:
        with pytest.raises(UpstreamFailed, match=r"^LLM provider failed: timed out after 0.2s$"):
            await deltas(client)
    finally:
        await client.aclose()


async def test_unreachable_provider_fails_without_naming_secrets() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(llm_base_url=f"http://127.0.0.1:{port}/v1", llm_api_key="sk-secret")
    client = OpenAiChat(settings, max_retries=0)
    try:
        with pytest.raises(UpstreamFailed) as caught:
            await deltas(client)
    finally:
        await client.aclose()
    assert caught.value.message == "LLM provider failed: could not connect"


async def test_fake_answers_non_streaming_requests_too(fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(["a", "b"], reasoning=["r"])
    client = openai.AsyncOpenAI(base_url=fake_llm.base_url, api_key="k")
    try:
        answer = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    finally:
        await client.close()
    assert answer.choices[0].message.content == "ab"
    assert answer.usage is not None
