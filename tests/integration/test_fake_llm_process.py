"""The fake LLM as a process of its own (the bench's), scripted over its control routes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import connect_sse

from tests.fakes.fake_llm_process import FakeLlmProcess


@pytest.fixture(scope="module")
def fake_process() -> Iterator[FakeLlmProcess]:
    with FakeLlmProcess() as fake:
        yield fake


@pytest.fixture
def fake(fake_process: FakeLlmProcess) -> Iterator[FakeLlmProcess]:
    fake_process.reset()
    yield fake_process
    fake_process.reset()


def stream_chat(fake: FakeLlmProcess, text: str = "hi") -> list[str]:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": text}]}
    contents = []
    with (
        httpx.Client(base_url=fake.base_url, timeout=10, trust_env=False) as client,
        connect_sse(client, "POST", "/chat/completions", json=body) as source,
    ):
        source.response.raise_for_status()
        for sse in source.iter_sse():
            if sse.data == "[DONE]":
                break
            delta = json.loads(sse.data)["choices"][0]["delta"]
            if delta.get("content"):
                contents.append(delta["content"])
    return contents


def test_a_scripted_stream_and_its_token_times(fake: FakeLlmProcess) -> None:
    fake.set_reply(["a", "b", "c"], delay_s=0.01)

    assert stream_chat(fake) == ["a", "b", "c"]

    times = fake.token_times
    assert len(times) == 3
    assert times == sorted(times) and times[0] < times[-1]
    assert len(fake.requests) == 1


def test_reset_forgets_and_echoes_again(fake: FakeLlmProcess) -> None:
    fake.set_reply(["x"])
    stream_chat(fake)
    fake.reset()

    assert (fake.requests, fake.token_times) == ([], [])
    assert "".join(stream_chat(fake, "hello")) == "echo: hello"


def test_release_lets_a_paused_stream_go_on(fake: FakeLlmProcess) -> None:
    fake.set_reply(["one", "two"], pause_after=1)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(stream_chat(fake)))
    reader.start()
    reader.join(timeout=0.3)
    assert reader.is_alive()  # held after the first token

    fake.release()
    reader.join(timeout=5)
    assert got == ["one", "two"]


def test_an_unknown_reply_argument_is_refused(fake: FakeLlmProcess) -> None:
    with httpx.Client(trust_env=False) as client:
        answer = client.post(
            fake.base_url.removesuffix("/v1") + "/_fake/reply", json={"tokenz": ["a"]}
        )
    assert answer.status_code == 400
