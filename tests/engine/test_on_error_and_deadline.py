"""A node's `on_error: continue`, and the workflow's `timeout_s` deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowport.engine.definition import parse_definition
from flowport.engine.llm import OpenAiChat
from flowport.errors import DeadlineExceeded, InvalidArgument
from tests.engine.builders import chain, compiled, failed, finished, run_all, statuses, succeeded
from tests.fakes.fake_llm import FakeLlm

DIVIDE = {"id": "calc", "type": "template", "template": "{{ 100 / n }}"}


def divide(**fields: Any) -> dict[str, Any]:
    return chain(
        {**DIVIDE, **fields},
        {"id": "end", "type": "out", "output": "{{ calc.output }}|{{ calc.error }}"},
        inputs=[{"name": "n", "type": "number"}],
    )


async def test_a_continuing_node_fails_but_the_run_goes_on_with_its_default() -> None:
    workflow = compiled(divide(on_error="continue", default_output="n/a"))
    events = await run_all(workflow, {"n": 0})
    message = "node calc: ZeroDivisionError: division by zero"
    assert succeeded(events).output == f"n/a|{message}"
    calc = finished(events)["calc"]
    assert (calc.status, calc.error) == ("failed", message)
    assert calc.output == {"output": "n/a", "error": message}
    assert statuses(events)["end"] == "succeeded"
    # When it does not fail, it is an ordinary node.
    assert succeeded(await run_all(workflow, {"n": 4})).output == "25.0|"


async def test_without_on_error_the_failure_ends_the_run() -> None:
    error = failed(await run_all(compiled(divide()), {"n": 0})).error
    assert error.node_id == "calc"


async def test_a_failing_branching_node_that_continues_takes_else() -> None:
    definition = {
        "name": "c",
        "nodes": [
            {"id": "start", "type": "in", "inputs": [{"name": "n", "type": "number"}]},
            {
                "id": "cond",
                "type": "condition",
                "branches": [{"name": "big", "when": "100 / n > 10"}],
                "on_error": "continue",
                "default_output": {"reason": "no n"},
            },
            {"id": "big", "type": "out", "output": "big"},
            {"id": "other", "type": "out", "output": "{{ cond.output.reason }}"},
        ],
        "edges": [
            {"from": "start", "to": "cond"},
            {"from": "cond", "to": "big", "branch": "big"},
            {"from": "cond", "to": "other", "branch": "else"},
        ],
    }
    events = await run_all(compiled(definition), {"n": 0})
    assert succeeded(events).output == "no n"
    assert statuses(events)["big"] == "skipped"
    assert finished(events)["cond"].output["branch"] == "else"  # type: ignore[index]


async def test_a_continuing_out_node_gives_its_default_as_the_output() -> None:
    out = {"id": "end", "type": "out", "output": "{{ 1 / 0 }}", "on_error": "continue"}
    workflow = compiled(chain({**out, "default_output": {"ok": False}}))
    assert succeeded(await run_all(workflow, {})).output == '{"ok": false}'


async def test_the_deadline_cancels_running_nodes_and_fails_the_run(
    fake_llm: FakeLlm, llm: OpenAiChat
) -> None:
    fake_llm.set_reply(["one", "two"], pause_after=1)  # holds the answer until released
    definition = chain(
        {"id": "ask", "type": "llm", "prompt": "{{ text }}"},
        {"id": "end", "type": "out", "output": "{{ ask.output }}"},
    )
    events = await run_all(compiled({**definition, "timeout_s": 0.5}), {"text": "?"}, llm=llm)
    run = failed(events)
    assert isinstance(run.error, DeadlineExceeded)
    assert run.error.message == "the run exceeded its timeout of 0.5 s"
    assert run.node_id is None
    assert statuses(events)["ask"] == "cancelled"
    assert "end" not in statuses(events)
    # The provider saw its connection close: the call did not go on in the background.
    assert await asyncio.to_thread(fake_llm.wait_for_disconnect, 5.0)


async def test_a_run_within_its_deadline_is_unaffected() -> None:
    workflow = compiled({**divide(), "timeout_s": 30})
    assert succeeded(await run_all(workflow, {"n": 4})).output == "25.0|"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"timeout_s": 0}, "timeout_s: must be greater than 0, got 0"),
        ({"timeout_s": "soon"}, "timeout_s: expected a number, got 'soon'"),
    ],
)
def test_bad_deadlines_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_definition({**divide(), **change})
    assert refused.value.message == message


def test_on_error_takes_fail_or_continue() -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_definition(divide(on_error="ignore"))
    assert refused.value.message == (
        "nodes[1].on_error: expected 'fail' or 'continue', got 'ignore'"
    )
