"""Intent nodes: the LLM names an intent, the matcher maps its answer to a branch or `else`."""

from __future__ import annotations

from typing import Any

import pytest

from flowport.engine.definition import parse_definition
from flowport.engine.events import Token
from flowport.engine.llm import ChatMessage, OpenAiChat
from flowport.engine.nodes.intent_node import match_intent
from flowport.errors import InvalidArgument, Unavailable
from tests.engine.builders import compiled, failed, finished, run_all, statuses, succeeded
from tests.fakes.fake_llm import FakeLlm

INTENT = {
    "id": "intent",
    "type": "intent",
    "intents": [
        {"name": "refund", "description": "the customer wants their money back"},
        {"name": "shipping", "description": "questions about delivery"},
    ],
}


def support(intent: dict[str, Any] = INTENT, inputs: list[Any] | None = None) -> dict[str, Any]:
    return {
        "name": "support",
        "nodes": [
            {
                "id": "start",
                "type": "in",
                "inputs": inputs
                or [{"name": "user-id", "type": "number"}, {"name": "问题", "type": "text"}],
            },
            intent,
            {"id": "money", "type": "out", "output": "refund desk"},
            {"id": "parcel", "type": "out", "output": "shipping desk"},
            {"id": "human", "type": "out", "output": "a human will answer"},
        ],
        "edges": [
            {"from": "start", "to": "intent"},
            {"from": "intent", "to": "money", "branch": "refund"},
            {"from": "intent", "to": "parcel", "branch": "shipping"},
            {"from": "intent", "to": "human", "branch": "else"},
        ],
    }


async def test_the_recognised_intent_picks_the_branch(fake_llm: FakeLlm, llm: OpenAiChat) -> None:
    fake_llm.set_reply(["Refund", "."])
    events = await run_all(compiled(support()), {"user-id": 7, "问题": "我要退款"}, llm=llm)
    assert succeeded(events).output == "refund desk"
    assert statuses(events)["parcel"] == statuses(events)["human"] == "skipped"
    node = finished(events)["intent"]
    assert node.output is not None
    assert (node.output["output"], node.output["branch"]) == ("refund", "refund")
    # A label, not text for the user: nothing is streamed.
    assert not any(isinstance(e, Token) for e in events)

    request = fake_llm.requests[0]
    assert request["temperature"] == 0
    system, user = request["messages"]
    assert system["role"] == "system"
    assert "- refund: the customer wants their money back\n- shipping:" in system["content"]
    assert "name of the one intent" in system["content"] and "answer: else" in system["content"]
    # By default the in node's first text input is classified (whatever its name).
    assert user == {"role": "user", "content": "我要退款"}


async def test_usage_is_recorded_on_the_node_and_summed_for_the_run(
    fake_llm: FakeLlm, llm: OpenAiChat
) -> None:
    fake_llm.set_reply(["shipping"], reasoning=["hmm"])
    events = await run_all(compiled(support()), {"问题": "where is it"}, llm=llm)
    usage = finished(events)["intent"].output["usage"]  # type: ignore[index]
    prompt = usage["prompt_tokens"]
    assert usage == {
        "prompt_tokens": prompt,
        "completion_tokens": 2,
        "reasoning_tokens": 1,
        "total_tokens": prompt + 2,
        "model": "default-model",
    }
    assert prompt > len("where is it")  # the system prompt counts too
    assert succeeded(events).usage == {k: v for k, v in usage.items() if k != "model"}


async def test_an_answer_naming_no_intent_takes_else(fake_llm: FakeLlm, llm: OpenAiChat) -> None:
    fake_llm.set_reply(["It sounds like a ", "refund or shipping question"])
    events = await run_all(compiled(support()), {"问题": "hello"}, llm=llm)
    assert succeeded(events).output == "a human will answer"
    assert finished(events)["intent"].output["branch"] == "else"  # type: ignore[index]


async def test_memory_and_an_input_template(fake_llm: FakeLlm, llm: OpenAiChat) -> None:
    node = {**INTENT, "input": "{{ 问题 }} (user {{ start['user-id'] }})", "memory": True}
    history: list[ChatMessage] = [
        {"role": "user", "content": "my parcel is late"},
        {"role": "assistant", "content": "sorry"},
    ]
    fake_llm.set_reply(["shipping"])
    events = await run_all(
        compiled(support(node)), {"user-id": 7, "问题": "still?"}, llm=llm, history=history
    )
    assert succeeded(events).output == "shipping desk"
    assert fake_llm.requests[0]["messages"][1:] == [
        *history,
        {"role": "user", "content": "still? (user 7)"},
    ]


async def test_no_provider_fails_the_node() -> None:
    error = failed(await run_all(compiled(support()), {"问题": "x"})).error
    assert isinstance(error, Unavailable) and error.node_id == "intent"


@pytest.mark.parametrize(
    ("answer", "intent"),
    [
        ("refund", "refund"),
        ("  REFUND!!\n", "refund"),
        ("**Refund**", "refund"),
        ("`refund`", "refund"),
        ("<think>they want money</think>\nrefund", "refund"),
        ("Refund request", "refund_request"),
        ("退款。", "退款"),
        ("ＲＥＦＵＮＤ", "refund"),
        ("refund or shipping", "else"),
        ("Intent: refund", "else"),
        ("", "else"),
        ("else", "else"),
    ],
)
def test_answers_match_names_regardless_of_case_and_punctuation(answer: str, intent: str) -> None:
    assert match_intent(answer, ["refund", "refund_request", "shipping", "退款"]) == intent


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"intents": []}, "nodes[1].intents: must not be empty"),
        (
            {"intents": [{"name": "Refund"}, {"name": "refund!"}]},
            "nodes[1].intents: intent names 'Refund' and 'refund!' read the same to the matcher",
        ),
        ({"intents": [{"name": "Else"}]}, "nodes[1].intents: 'else' is the implicit fallback"),
        ({"intents": [{"name": "?!"}]}, "nodes[1].intents: intent name '?!' has no letters"),
        ({"input": "{{ nope }}"}, "nodes[1].input: 'nope' is not an input or an upstream node"),
    ],
)
def test_bad_intent_nodes_are_refused_at_save_time(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_definition(support({**INTENT, **change}))
    assert refused.value.message.startswith(message), refused.value.message


def test_without_a_text_input_the_input_template_is_required() -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_definition(support(inputs=[{"name": "n", "type": "number"}]))
    assert refused.value.message == (
        "nodes[1].input: required: the 'in' node has no text input to classify by default"
    )
