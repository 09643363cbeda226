"""The OpenAI-compatible client against the fake provider: deltas, errors, configuration."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import openai
import pytest

from flowport.engine.llm import ChatMessage, Delta, OpenAiChat, TokenUsage, create_llm_client
from flowport.errors import Unavailable, UpstreamFailed
from flowport.settings import Settings
from tests.fakes.fake_http import FakeHttp
from tests.fakes.fake_llm import FakeLlm


async def deltas(client: OpenAiChat, text: str = "hello there") -> list[Delta]:
    stream = client.stream_chat(
        messages=[{"role": "user", "content": text}], model="m", temperature=None
    )
    return [delta async for delta in stream]


async def failure(settings: Settings) -> str:
    """The message a call fails with, through a client that does not retry."""
    client = OpenAiChat(settings, max_retries=0)
    try:
        with pytest.raises(UpstreamFailed) as caught:
            await deltas(client)
    finally:
        await client.aclose()
    return caught.value.message


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
    assert await failure(settings) == "LLM provider failed: timed out after 0.2s"


async def test_unreachable_provider_fails_without_naming_secrets() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(llm_base_url=f"http://127.0.0.1:{port}/v1", llm_api_key="sk-secret")
    assert await failure(settings) == "LLM provider failed: could not connect"


async def test_a_2xx_answer_that_is_no_event_stream_fails(fake_http: FakeHttp) -> None:
    # The query takes in the path the client appends: /text answers 200 text/plain.
    settings = Settings(llm_base_url=fake_http.url("/text?rest="))
    assert await failure(settings) == "LLM provider failed: did not answer with an event stream"
    assert fake_http.requests[0].path == "/text"


async def test_the_environments_proxy_carries_the_requests(
    fake_llm: FakeLlm, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake serves a request in a proxy's absolute form too: it stands in as the proxy
    # for a provider whose name resolves nowhere.
    monkeypatch.setenv("HTTP_PROXY", fake_llm.base_url.removesuffix("/v1"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    settings = Settings(llm_base_url="http://llm.invalid/v1")
    client = OpenAiChat(settings, max_retries=0)
    try:
        assert "".join(d.content for d in await deltas(client, "hi")) == "echo: hi"
    finally:
        await client.aclose()
    monkeypatch.setenv("NO_PROXY", "llm.invalid")
    assert await failure(settings) == "LLM provider failed: could not connect"


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


async def test_reasoning_then_content_then_usage(fake_llm: FakeLlm, llm: OpenAiChat) -> None:
    fake_llm.set_reply(["a", "b"], reasoning=["r1", "r2"])
    assert await deltas(llm, "hi") == [
        Delta(content="", reasoning="r1"),
        Delta(content="", reasoning="r2"),
        Delta(content="a"),
        Delta(content="b"),
        Delta(
            content="",
            usage=TokenUsage(
                prompt_tokens=2, completion_tokens=4, reasoning_tokens=2, total_tokens=6
            ),
        ),
    ]


async def test_a_503_is_retried_until_the_provider_recovers(
    fake_llm: FakeLlm, llm: OpenAiChat
) -> None:
    fake_llm.set_reply(["ok"], status=503, failures=2)
    got = await deltas(llm)
    assert [d.content for d in got if d.usage is None] == ["ok"]
    assert len(fake_llm.requests) == 3


async def test_retries_end_with_the_last_status(fake_llm: FakeLlm, llm: OpenAiChat) -> None:
    fake_llm.set_reply(["ok"], status=503)
    with pytest.raises(UpstreamFailed) as caught:
        await deltas(llm)
    assert caught.value.message == "LLM provider failed: HTTP 503 Service Unavailable"
    assert len(fake_llm.requests) == 3  # max_retries=2


async def test_a_400_is_not_retried(fake_llm: FakeLlm, llm: OpenAiChat) -> None:
    fake_llm.set_reply(["ok"], status=400)
    with pytest.raises(UpstreamFailed) as caught:
        await deltas(llm)
    assert caught.value.message == "LLM provider failed: HTTP 400 Bad Request"
    assert len(fake_llm.requests) == 1


async def test_an_error_mid_stream_fails_with_the_providers_message(
    fake_llm: FakeLlm, llm: OpenAiChat
) -> None:
    fake_llm.set_reply(["a", "b"], error_after=1)
    got: list[Delta] = []
    with pytest.raises(UpstreamFailed) as caught:
        async for delta in llm.stream_chat(
            messages=[{"role": "user", "content": "x"}], model="m", temperature=None
        ):
            got.append(delta)
    assert got == [Delta(content="a")]
    assert caught.value.message == (
        "LLM provider failed: The server had an error while processing your request."
    )
    assert len(fake_llm.requests) == 1  # never retried once deltas went out


async def test_a_malformed_chunk_fails(fake_llm: FakeLlm, llm: OpenAiChat) -> None:
    fake_llm.set_reply(["a"], error_after=1, error_data="{not json")
    with pytest.raises(UpstreamFailed, match=r"^LLM provider failed: sent a malformed chunk$"):
        await deltas(llm)


async def test_closing_the_stream_early_disconnects_from_the_provider(
    fake_llm: FakeLlm, llm: OpenAiChat
) -> None:
    fake_llm.set_reply(["a", "b", "c"], pause_after=1)
    stream = llm.stream_chat(
        messages=[{"role": "user", "content": "x"}], model="m", temperature=None
    )
    async with contextlib.aclosing(stream):
        assert await anext(stream) == Delta(content="a")
    # The fake is still holding "b": only our side can have ended the stream.
    assert await asyncio.to_thread(fake_llm.wait_for_disconnect)


@pytest.mark.parametrize("temperature", [None, 0.3])
async def test_our_request_body_is_the_official_clients(
    fake_llm: FakeLlm, llm: OpenAiChat, temperature: float | None
) -> None:
    messages: list[ChatMessage] = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is it? 猫"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            ],
        },
    ]
    async for _ in llm.stream_chat(messages=messages, model="m", temperature=temperature):
        pass
    official = openai.AsyncOpenAI(base_url=fake_llm.base_url, api_key="k")
    try:
        stream = await official.chat.completions.create(
            model="m",
            messages=messages,  # ours are its message TypedDicts
            stream=True,
            stream_options={"include_usage": True},
            temperature=openai.omit if temperature is None else temperature,
        )
        async with stream:
            async for _ in stream:
                pass
    finally:
        await official.close()
    ours, theirs = fake_llm.requests
    assert ours == theirs
