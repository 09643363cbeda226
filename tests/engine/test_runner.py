"""The DAG runner: event order, concurrency, streaming, failures and cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import pytest

from flowport.engine import llm as llm_module
from flowport.engine.definition import CompiledWorkflow
from flowport.engine.events import (
    NodeFinished,
    NodeStarted,
    RunEvent,
    RunFailed,
    RunStarted,
    RunSucceeded,
    Token,
)
from flowport.engine.llm import ChatMessage, Delta, LlmClient, OpenAiChat
from flowport.errors import FlowportError, Unavailable, UpstreamFailed
from tests.engine.builders import BMI, batches, chain, collect, compiled, events
from tests.fakes.fake_llm import FakeLlm

LLM = {"id": "ask", "type": "llm", "name": "LLM1", "prompt": "{{ text }}"}
BMI_INPUT = {"height": 1.8, "weight": 75}
OUT = {"id": "end", "type": "out", "output": "{{ ask.output }}"}


def run(
    workflow: CompiledWorkflow,
    inputs: dict[str, Any],
    llm: LlmClient | None = None,
    history: Sequence[ChatMessage] = (),
) -> AsyncGenerator[RunEvent, None]:
    return events(workflow, inputs, llm=llm, history=history)


def shape(events: list[RunEvent]) -> list[tuple[str, str | None]]:
    def one(event: RunEvent) -> tuple[str, str | None]:
        match event:
            case NodeStarted() | Token():
                return type(event).__name__, event.node_id
            case NodeFinished():
                return f"NodeFinished:{event.status}", event.node_id
            case _:
                return type(event).__name__, None

    return [one(event) for event in events if not isinstance(event, Token)]


async def test_bmi_run_emits_events_in_order_and_the_output() -> None:
    events = await collect(run(compiled(BMI), {"height": "1.8", "weight": "75"}))
    assert shape(events) == [
        ("RunStarted", None),
        ("NodeStarted", "start"),
        ("NodeFinished:succeeded", "start"),
        ("NodeStarted", "calc"),
        ("NodeFinished:succeeded", "calc"),
        ("NodeStarted", "end"),
        ("NodeFinished:succeeded", "end"),
        ("RunSucceeded", None),
    ]
    started, *_, last = events
    assert started == RunStarted("run_1", "start", {"height": 1.8, "weight": 75}, "s1")
    assert isinstance(last, RunSucceeded)
    assert last.output == "您的BMI值是23.15"
    finished = [e for e in events if isinstance(e, NodeFinished)]
    assert finished[0].name == "开始" and finished[0].type == "in"
    assert finished[0].output == {
        "height": 1.8,
        "weight": 75,
        "output": {"height": 1.8, "weight": 75},
    }
    assert finished[1].output == {"output": "23.15"}
    assert all(f.time_spend >= 0 and f.started_at.tzinfo is not None for f in finished)
    assert 0 < last.total_time < 10  # seconds of this run, not a timestamp


async def test_numeric_node_ids_are_read_through_nodes() -> None:
    workflow = compiled(
        chain(
            {"id": "1741675999864", "type": "template", "template": "hi {{ text }}"},
            {"id": "end", "type": "out", "output": '{{ nodes["1741675999864"].output }}!'},
        )
    )
    events = await collect(run(workflow, {"text": "bob"}))
    assert isinstance(events[-1], RunSucceeded) and events[-1].output == "hi bob!"


async def test_llm_tokens_arrive_one_by_one_while_the_model_still_writes(
    fake_llm: FakeLlm, llm: OpenAiChat
) -> None:
    fake_llm.set_reply(["嗯", ",", "在", "呢。"], pause_after=1)
    events = run(compiled(chain(LLM, OUT)), {"text": "在吗?"}, llm)
    seen: list[RunEvent] = []
    async with asyncio.timeout(10):
        async for event in events:
            seen.append(event)
            if isinstance(event, Token) and sum(isinstance(e, Token) for e in seen) == 1:
                # The fake holds the other three chunks until released: the token
                # reached us while the model was provably still answering.
                assert len(fake_llm.token_times) == 1
                assert not any(isinstance(e, NodeFinished) and e.node_id == "ask" for e in seen)
                fake_llm.release()
    tokens = [e for e in seen if isinstance(e, Token)]
    # The first came alone; the rest, released at once, may come joined.
    assert (tokens[0].node_id, tokens[0].content, tokens[0].reasoning) == ("ask", "嗯", None)
    assert {(t.node_id, t.reasoning) for t in tokens} == {("ask", None)}
    assert "".join(t.content for t in tokens) == "嗯,在呢。"
    finished = next(e for e in seen if isinstance(e, NodeFinished) and e.node_id == "ask")
    # The fake counts a prompt token per character and a completion token per chunk.
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "reasoning_tokens": 0, "total_tokens": 7}
    assert finished.output == {
        "output": "嗯,在呢。",
        "reasoning": None,
        "model": "default-model",
        "usage": {**usage, "model": "default-model"},
    }
    assert isinstance(seen[-1], RunSucceeded) and seen[-1].output == "嗯,在呢。"
    assert seen[-1].usage == usage
    assert fake_llm.requests[0]["messages"] == [{"role": "user", "content": "在吗?"}]
    assert fake_llm.requests[0]["model"] == "default-model"


async def test_reasoning_is_streamed_and_kept(fake_llm: FakeLlm, llm: OpenAiChat) -> None:
    fake_llm.set_reply(["42"], reasoning=["let me ", "think"])
    events = await collect(run(compiled(chain(LLM, OUT)), {"text": "?"}, llm))
    tokens = [(e.content, e.reasoning) for e in events if isinstance(e, Token)]
    # Reasoning first, then the answer; chunks that arrived together may come joined.
    reasoning = [r for c, r in tokens if r is not None]
    answer = [c for c, r in tokens if r is None]
    assert tokens[: len(reasoning)] == [("", r) for r in reasoning]
    assert "".join(reasoning) == "let me think" and "".join(answer) == "42"
    finished = next(e for e in events if isinstance(e, NodeFinished) and e.node_id == "ask")
    assert finished.output is not None and finished.output["reasoning"] == "let me think"


class _Burst:
    """A provider whose chunks are all there at once, then one more after a pause."""

    async def stream_chat(
        self, *, messages: Sequence[ChatMessage], model: str, temperature: float | None
    ) -> AsyncGenerator[Delta, None]:
        for text in ("let ", "me ", "think"):
            yield Delta("", reasoning=text)
        for text in ("a", "b", "c"):
            yield Delta(text)
        await asyncio.sleep(0.05)
        yield Delta("d")

    async def aclose(self) -> None:
        pass


async def test_tokens_that_queued_up_together_are_joined_by_kind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(llm_module, "PAUSE_EVERY_S", 60.0)  # no pause within the burst
    events = await collect(run(compiled(chain(LLM, OUT)), {"text": "?"}, _Burst()))
    tokens = [(e.node_id, e.content, e.reasoning) for e in events if isinstance(e, Token)]
    # The first chunk goes at once; then one event per burst and kind, never reasoning
    # mixed into the answer; the chunk that came after a pause goes on its own.
    assert tokens == [
        ("ask", "", "let "),
        ("ask", "", "me think"),
        ("ask", "abc", None),
        ("ask", "d", None),
    ]
    assert isinstance(events[-1], RunSucceeded) and events[-1].output == "abcd"


class _SlowToParse:
    """Ten chunks that arrived at once, each taking a millisecond of CPU to parse."""

    async def stream_chat(
        self, *, messages: Sequence[ChatMessage], model: str, temperature: float | None
    ) -> AsyncGenerator[Delta, None]:
        for index in range(10):
            busy_until = time.perf_counter() + 0.001
            while time.perf_counter() < busy_until:  # parsing: CPU, no await
                pass
            yield Delta(f"c{index};")

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize(("pause_every_s", "expected"), [(0.0005, 10), (60.0, 2)])
async def test_a_long_burst_is_sent_while_it_is_parsed(
    monkeypatch: pytest.MonkeyPatch, pause_every_s: float, expected: int
) -> None:
    # Without pauses the consumer gets the first chunk, then nothing until all nine others
    # were parsed; pausing every half millisecond it can send each as it is parsed.
    monkeypatch.setattr(llm_module, "PAUSE_EVERY_S", pause_every_s)
    events = await collect(run(compiled(chain(LLM, OUT)), {"text": "?"}, _SlowToParse()))
    tokens = [e.content for e in events if isinstance(e, Token)]
    assert len(tokens) == expected and tokens[0] == "c0;"
    assert "".join(tokens) == "".join(f"c{i};" for i in range(10))


async def test_llm_node_sends_system_history_prompt_model_and_temperature(
    fake_llm: FakeLlm, llm: OpenAiChat
) -> None:
    node = {
        **LLM,
        "system": "You answer {{ text }}.",
        "model": "m-1",
        "temperature": 0.2,
        "memory": True,
        "memory_turns": 1,
    }
    history: list[ChatMessage] = [
        {"role": "user", "content": "old"},
        {"role": "assistant", "content": "old answer"},
        {"role": "user", "content": "last"},
        {"role": "assistant", "content": "last answer"},
    ]
    await collect(run(compiled(chain(node, OUT)), {"text": "hi"}, llm, history))
    body = fake_llm.requests[0]
    assert body["model"] == "m-1" and body["temperature"] == 0.2 and body["stream"] is True
    assert body["messages"] == [
        {"role": "system", "content": "You answer hi."},
        {"role": "user", "content": "last"},
        {"role": "assistant", "content": "last answer"},
        {"role": "user", "content": "hi"},
    ]


async def test_independent_branches_run_concurrently(fake_llm: FakeLlm, llm: OpenAiChat) -> None:
    definition = {
        "name": "two",
        "nodes": [
            {"id": "start", "type": "in", "inputs": [{"name": "text"}]},
            {"id": "a", "type": "llm", "prompt": "A {{ text }}"},
            {"id": "b", "type": "llm", "prompt": "B {{ text }}"},
            {"id": "end", "type": "out", "output": "{{ a.output }}|{{ b.output }}"},
        ],
        "edges": [
            {"from": "start", "to": "a"},
            {"from": "start", "to": "b"},
            {"from": "a", "to": "end"},
            {"from": "b", "to": "end"},
        ],
    }
    # Every answer stops after its first chunk until released: were the branches run
    # one after the other, the second would never start and this test would time out.
    fake_llm.set_reply(["x", "y"], pause_after=1)
    seen: list[RunEvent] = []
    async with asyncio.timeout(10):
        async for event in run(compiled(definition), {"text": "t"}, llm):
            seen.append(event)
            if {e.node_id for e in seen if isinstance(e, Token)} == {"a", "b"}:
                fake_llm.release()
    assert len(fake_llm.requests) == 2
    order = shape(seen)
    first_finish = min(order.index(("NodeFinished:succeeded", n)) for n in "ab")
    assert order.index(("NodeStarted", "a")) < first_finish
    assert order.index(("NodeStarted", "b")) < first_finish
    assert isinstance(seen[-1], RunSucceeded) and seen[-1].output == "xy|xy"


async def test_no_provider_configured_fails_the_llm_node() -> None:
    events = await collect(run(compiled(chain(LLM, OUT)), {"text": "?"}, llm=None))
    failed = events[-1]
    assert isinstance(failed, RunFailed) and failed.node_id == "ask"
    assert isinstance(failed.error, Unavailable)
    assert "FLOWPORT_LLM_BASE_URL" in failed.error.message
    assert ("NodeFinished:failed", "ask") in shape(events)
    assert ("NodeStarted", "end") not in shape(events)


async def test_provider_error_fails_the_run_naming_the_node(
    fake_llm: FakeLlm, llm: OpenAiChat
) -> None:
    fake_llm.set_reply([], status=500)
    events = await collect(run(compiled(chain(LLM, OUT)), {"text": "?"}, llm))
    failed = events[-1]
    assert isinstance(failed, RunFailed) and isinstance(failed.error, UpstreamFailed)
    assert failed.node_id == "ask" and failed.error.node_id == "ask"
    assert failed.error.message == "node ask: LLM provider failed: HTTP 500 Internal Server Error"
    assert "sk-test" not in failed.error.message
    node = next(e for e in events if isinstance(e, NodeFinished) and e.node_id == "ask")
    assert node.status == "failed" and node.error == failed.error.message
    assert len(fake_llm.requests) == 3  # the client's two retries, then it gave up


async def test_template_runtime_error_names_the_node() -> None:
    workflow = compiled(
        chain(
            {"id": "calc", "type": "template", "template": "{{ 1 / n }}"},
            {"id": "end", "type": "out", "output": "{{ calc.output }}"},
            inputs=[{"name": "n", "type": "number"}],
        )
    )
    events = await collect(run(workflow, {"n": 0}))
    failed = events[-1]
    assert isinstance(failed, RunFailed) and failed.node_id == "calc"
    assert failed.error.message == "node calc: ZeroDivisionError: division by zero"
    finished = [e for e in events if isinstance(e, NodeFinished) and e.node_id == "calc"]
    assert finished[0].status == "failed" and finished[0].error == failed.error.message


async def test_sandbox_escape_fails_the_node_clearly() -> None:
    workflow = compiled(chain({"id": "end", "type": "out", "output": "{{ ''.__class__.__mro__ }}"}))
    failed = (await collect(run(workflow, {})))[-1]
    assert isinstance(failed, RunFailed) and failed.node_id == "end"
    assert failed.error.message.startswith("node end: access to attribute '__class__'")


async def test_unexpected_exception_becomes_an_error_naming_node_and_type() -> None:
    class Broken:
        async def stream_chat(
            self, *, messages: Sequence[ChatMessage], model: str, temperature: float | None
        ) -> AsyncGenerator[Delta, None]:
            raise RuntimeError("socket on fire")
            yield Delta("")  # pragma: no cover - makes this an async generator

        async def aclose(self) -> None:
            pass

    failed = (await collect(run(compiled(chain(LLM, OUT)), {"text": "?"}, Broken())))[-1]
    assert isinstance(failed, RunFailed) and type(failed.error) is FlowportError
    assert failed.error.message == "node ask failed: RuntimeError: socket on fire"


async def test_a_failing_branch_cancels_the_running_ones(
    fake_llm: FakeLlm, llm: OpenAiChat
) -> None:
    definition = {
        "name": "fail",
        "nodes": [
            {"id": "start", "type": "in", "inputs": [{"name": "text"}]},
            {"id": "ask", "type": "llm", "prompt": "{{ text }}"},
            {"id": "bad", "type": "template", "template": "{{ 1 / 0 }}"},
            {"id": "end", "type": "out", "output": "{{ ask.output }}{{ bad.output }}"},
        ],
        "edges": [
            {"from": "start", "to": "ask"},
            {"from": "start", "to": "bad"},
            {"from": "ask", "to": "end"},
            {"from": "bad", "to": "end"},
        ],
    }
    fake_llm.set_reply(["never", "finished"], pause_after=1)
    events = await collect(run(compiled(definition), {"text": "t"}, llm))
    order = shape(events)
    assert order[-1] == ("RunFailed", None)
    assert isinstance(events[-1], RunFailed) and events[-1].node_id == "bad"
    assert ("NodeFinished:failed", "bad") in order
    # ask was waiting for the model when bad failed: it is cancelled, and says so.
    assert order.index(("NodeFinished:cancelled", "ask")) < len(order) - 1
    assert ("NodeStarted", "end") not in order


@pytest.mark.parametrize("how", ["aclose", "cancel"])
async def test_client_leaving_cancels_the_llm_call(
    fake_llm: FakeLlm, llm: OpenAiChat, how: str
) -> None:
    fake_llm.set_reply(["one", "two", "three"], pause_after=1)
    events = run(compiled(chain(LLM, OUT)), {"text": "?"}, llm)
    got_token = asyncio.Event()

    async def consume() -> None:
        async for event in events:
            if isinstance(event, Token):
                got_token.set()
                if how == "aclose":
                    return

    consumer = asyncio.create_task(consume())
    async with asyncio.timeout(10):
        await got_token.wait()
        if how == "aclose":
            await consumer
            await events.aclose()
        else:
            consumer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await consumer
    # The fake is still holding "two" and "three": only a closed connection ends it.
    assert await asyncio.to_thread(fake_llm.wait_for_disconnect, 5.0)
    assert len(fake_llm.token_times) == 1


async def test_a_run_not_live_gives_every_event_at_once_when_it_is_over() -> None:
    async with asyncio.timeout(10):
        given = [batch async for batch in batches(compiled(BMI), BMI_INPUT, live=False)]
    assert len(given) == 1
    live = await collect(run(compiled(BMI), BMI_INPUT))
    assert shape(given[0]) == shape(live)
    assert isinstance(given[0][-1], RunSucceeded)
    assert given[0][-1].output == "您的BMI值是23.15"


async def test_cancelling_the_consumer_of_a_run_not_live_cancels_the_llm_call(
    fake_llm: FakeLlm, llm: OpenAiChat
) -> None:
    fake_llm.set_reply(["one", "two", "three"], pause_after=1)

    async def consume() -> list[list[RunEvent]]:
        stream = batches(compiled(chain(LLM, OUT)), {"text": "?"}, llm=llm, live=False)
        return [batch async for batch in stream]

    consumer = asyncio.create_task(consume())
    # No event reaches the consumer before the end: the fake tells when the node is writing.
    assert await asyncio.to_thread(fake_llm.wait_for_tokens, 1, 5.0)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert await asyncio.to_thread(fake_llm.wait_for_disconnect, 5.0)
    assert len(fake_llm.token_times) == 1
