"""A workflow of immediate nodes (in, template, condition, out) run in one synchronous pass
when nobody streams it: the same events as a run of tasks gives, each node after the nodes
before it."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from flowport.engine import run_now, validate_inputs
from flowport.engine.events import (
    NodeFinished,
    NodeStarted,
    RunEvent,
    RunFailed,
    RunStarted,
    RunSucceeded,
)
from flowport.outbound import Outbound
from tests.engine.builders import BMI, LOCAL_POLICY, batches, chain, collect, compiled, events
from tests.engine.test_condition import BRANCHES
from tests.engine.test_on_error_and_deadline import divide

LLM = {"id": "ask", "type": "llm", "prompt": "{{ text }}"}


def same(event: RunEvent) -> Any:
    """What the two ways of running must agree on: everything but times."""
    match event:
        case NodeFinished():
            return (
                "finished",
                event.node_id,
                event.status,
                event.inputs,
                event.output,
                event.error,
            )
        case RunSucceeded():
            return ("succeeded", event.output, event.usage)
        case RunFailed():
            return ("failed", event.node_id, type(event.error), event.error.message)
        case _:
            return event


CASES = [
    pytest.param(BMI, {"height": 1.8, "weight": 75}, id="chain"),
    pytest.param(BRANCHES, {"age": 30}, id="branch-taken"),
    pytest.param(BRANCHES, {"age": 7}, id="else-branch"),
    pytest.param(divide(on_error="continue", default_output="n/a"), {"n": 0}, id="continued"),
    pytest.param(divide(), {"n": 0}, id="failed"),
]


@pytest.mark.parametrize(("definition", "inputs"), CASES)
async def test_one_pass_gives_the_events_of_a_run_of_tasks(
    definition: dict[str, Any], inputs: dict[str, Any]
) -> None:
    workflow = compiled(definition)
    assert workflow.immediate
    given = [batch async for batch in batches(workflow, inputs, live=False)]
    assert len(given) == 1
    one_pass = given[0]
    tasks = await collect(events(workflow, inputs))
    # The same events: siblings on branches may come in another order.
    assert sorted(map(repr, map(same, one_pass))) == sorted(map(repr, map(same, tasks)))
    assert isinstance(one_pass[0], RunStarted)
    assert isinstance(one_pass[-1], RunSucceeded | RunFailed)
    # Each node starts after every node before it finished, and finishes right after.
    done: set[str] = set()
    for event, after in itertools.pairwise(one_pass):
        if isinstance(event, NodeStarted):
            assert workflow.predecessors[event.node_id] <= done
            assert isinstance(after, NodeFinished) and after.node_id == event.node_id
        if isinstance(event, NodeFinished):
            assert workflow.predecessors[event.node_id] <= done
            done.add(event.node_id)


def test_a_workflow_with_io_is_run_by_tasks() -> None:
    workflow = compiled(chain(LLM, {"id": "end", "type": "out", "output": "{{ ask.output }}"}))
    assert not workflow.immediate


@pytest.mark.parametrize(("definition", "inputs"), CASES)
async def test_run_now_keeps_what_a_record_needs(
    definition: dict[str, Any], inputs: dict[str, Any]
) -> None:
    workflow = compiled(definition)
    async with Outbound(LOCAL_POLICY) as outbound:
        kept = run_now(
            workflow,
            run_id="run_1",
            inputs=validate_inputs(workflow.in_node.inputs, inputs),
            session_id="s1",
            outbound=outbound,
        )
    (full,) = [batch async for batch in batches(workflow, inputs, live=False)]
    wanted = [e for e in full if not isinstance(e, RunStarted | NodeStarted)]
    assert [same(event) for event in kept] == [same(event) for event in wanted]
    if isinstance(kept[-1], RunSucceeded):
        # Every node is on record: the ones that ran and the ones skipped.
        assert {e.node_id for e in kept if isinstance(e, NodeFinished)} == set(workflow.nodes)
