"""Workflow nodes: another workflow runs as a child through the loader seam, depth-bounded."""

from __future__ import annotations

from typing import Any

import pytest

from flowport.engine.definition import CompiledWorkflow, parse_definition
from flowport.engine.llm import OpenAiChat
from flowport.errors import InvalidArgument, NotFound, Unavailable
from tests.engine.builders import chain, compiled, failed, finished, run_all, started, succeeded
from tests.fakes.fake_llm import FakeLlm

SHOUT = chain(
    {"id": "loud", "type": "template", "template": "{{ word | upper }}{{ '!' * times }}"},
    {"id": "said", "type": "out", "output": "{{ loud.output }}"},
    inputs=[
        {"name": "word", "required": True},
        {"name": "times", "type": "number", "default": 1},
    ],
)


def caller(workflow_id: str, inputs: dict[str, str]) -> dict[str, Any]:
    return chain(
        {"id": "call", "type": "workflow", "workflow_id": workflow_id, "inputs": inputs},
        {"id": "end", "type": "out", "output": "<{{ call.output }}>"},
    )


class Loader:
    """The seam the service fills with its storage: workflows by id, and who asked."""

    def __init__(self, **workflows: dict[str, Any]) -> None:
        self.workflows = {wid: compiled(definition) for wid, definition in workflows.items()}
        self.asked: list[str] = []

    async def __call__(self, workflow_id: str) -> CompiledWorkflow:
        self.asked.append(workflow_id)
        if workflow_id not in self.workflows:
            raise NotFound(f"workflow {workflow_id} not found, or not published")
        return self.workflows[workflow_id]


async def test_the_child_runs_and_its_output_is_the_nodes() -> None:
    loader = Loader(wf_shout=SHOUT)
    parent = compiled(caller("wf_shout", {"word": "{{ text }}", "times": "{{ text | length }}"}))
    events = await run_all(parent, {"text": "hey"}, load_workflow=loader)
    assert succeeded(events).output == "<HEY!!!>"
    assert loader.asked == ["wf_shout"]
    # The child's own events stay inside: the parent sees the node start and finish once.
    assert started(events) == ["start", "call", "end"]
    call = finished(events)["call"]
    assert call.output == {"output": "HEY!!!", "usage": None}
    assert call.inputs == {"workflow_id": "wf_shout", "inputs": {"word": "hey", "times": 3}}


async def test_an_empty_rendering_leaves_the_childs_default() -> None:
    parent = compiled(caller("wf_shout", {"word": "{{ text }}", "times": ""}))
    events = await run_all(parent, {"text": "a"}, load_workflow=Loader(wf_shout=SHOUT))
    assert succeeded(events).output == "<A!>"


async def test_an_unknown_workflow_fails_the_node_naming_it() -> None:
    parent = compiled(caller("wf_gone", {}))
    error = failed(await run_all(parent, {"text": "x"}, load_workflow=Loader())).error
    assert isinstance(error, NotFound) and error.node_id == "call"
    assert error.message == "node call: workflow wf_gone not found, or not published"


async def test_invalid_child_input_names_the_workflow_and_field() -> None:
    parent = compiled(caller("wf_shout", {"times": "2"}))
    error = failed(await run_all(parent, {"text": "x"}, load_workflow=Loader(wf_shout=SHOUT))).error
    assert isinstance(error, InvalidArgument)
    assert error.message == "node call: workflow wf_shout: input.word: required"


async def test_a_failing_child_fails_the_node_with_its_status_and_reason() -> None:
    child = chain(
        {"id": "ask", "type": "llm", "prompt": "{{ text }}"},
        {"id": "end", "type": "out", "output": "{{ ask.output }}"},
    )
    parent = compiled(caller("wf_child", {"text": "{{ text }}"}))
    error = failed(await run_all(parent, {"text": "x"}, load_workflow=Loader(wf_child=child))).error
    assert isinstance(error, Unavailable) and error.node_id == "call"
    assert error.message.startswith(
        "node call: workflow wf_child failed: node ask: no LLM provider configured"
    )


async def test_a_workflow_calling_itself_stops_at_the_depth_limit() -> None:
    loop = caller("wf_loop", {"text": "{{ text }}"})
    loader = Loader(wf_loop=loop)
    error = failed(await run_all(compiled(loop), {"text": "x"}, load_workflow=loader)).error
    assert isinstance(error, InvalidArgument) and error.node_id == "call"
    assert error.message == (
        "node call: workflow nodes nest deeper than 5 levels (does a workflow call itself?)"
    )
    # The top run and five nested ones each loaded it; the sixth level was refused.
    assert len(loader.asked) == 6


async def test_without_a_loader_workflow_nodes_fail_clearly() -> None:
    error = failed(await run_all(compiled(caller("wf_x", {})), {"text": "x"})).error
    assert isinstance(error, Unavailable)
    assert error.message == (
        "node call: workflow nodes cannot run here: no workflow loader is configured"
    )


async def test_the_childs_token_usage_counts_for_the_run(
    fake_llm: FakeLlm, llm: OpenAiChat
) -> None:
    child = chain(
        {"id": "ask", "type": "llm", "prompt": "{{ text }}"},
        {"id": "end", "type": "out", "output": "{{ ask.output }}"},
    )
    fake_llm.set_reply(["a", "b"])
    parent = chain(
        {"id": "first", "type": "llm", "prompt": "{{ text }}"},
        {"id": "call", "type": "workflow", "workflow_id": "wf_child", "inputs": {"text": "xy"}},
        {"id": "end", "type": "out", "output": "{{ call.output }}"},
    )
    events = await run_all(
        compiled(parent), {"text": "abc"}, llm=llm, load_workflow=Loader(wf_child=child)
    )
    assert succeeded(events).output == "ab"
    assert finished(events)["call"].output["usage"] == {  # type: ignore[index]
        "prompt_tokens": 2,
        "completion_tokens": 2,
        "reasoning_tokens": 0,
        "total_tokens": 4,
    }
    assert succeeded(events).usage == {
        "prompt_tokens": 5,
        "completion_tokens": 4,
        "reasoning_tokens": 0,
        "total_tokens": 9,
    }


def test_only_the_shape_is_checked_at_save_time() -> None:
    # The target may not exist yet: it can be published after this workflow.
    parse_definition(caller("wf_later", {"anything": "{{ text }}"}))
    with pytest.raises(InvalidArgument, match=r"^nodes\[1\]\.workflow_id: must not be empty"):
        parse_definition(caller("", {}))
    with pytest.raises(InvalidArgument, match=r"^nodes\[1\]\.inputs\.a: 'nope' is not an input"):
        parse_definition(caller("wf", {"a": "{{ nope }}"}))
