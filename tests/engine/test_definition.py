"""Workflow definitions: what is accepted, and how each mistake is reported at save time."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from flowport.engine.definition import (
    LlmNode,
    TemplateNode,
    compile_workflow,
    parse_definition,
)
from flowport.errors import InvalidArgument
from tests.engine.builders import BMI, chain

IN = {"id": "start", "type": "in", "inputs": [{"name": "height", "type": "number"}]}
OUT = {"id": "end", "type": "out", "output": "done"}


def flow(nodes: list[Any], edges: list[Any] | None = None) -> dict[str, Any]:
    return {"name": "t", "nodes": nodes, "edges": edges or []}


def line(*ids: str) -> list[dict[str, str]]:
    return [{"from": a, "to": b} for a, b in itertools.pairwise(ids)]


def test_bmi_example_parses_with_defaults_filled_in() -> None:
    definition = parse_definition(BMI)
    assert definition.visibility == "private"
    assert [node.name for node in definition.nodes] == ["开始", "计算", "结束(输出)1"]
    assert (definition.edges[0].source, definition.edges[0].target) == ("start", "calc")
    assert definition.model_dump(by_alias=True, exclude_none=True)["edges"][0] == {
        "from": "start",
        "to": "calc",
    }


def test_node_name_defaults_to_its_id_and_llm_fields_have_defaults() -> None:
    data = chain({"id": "ask", "type": "llm", "prompt": "{{ text }}"}, {**OUT})
    node = parse_definition(data).nodes[1]
    assert isinstance(node, LlmNode)
    assert (node.name, node.memory, node.memory_turns, node.model) == ("ask", False, 10, None)


def test_compiled_workflow_knows_order_neighbours_and_templates() -> None:
    workflow = compile_workflow(parse_definition(BMI))
    assert workflow.order == ("start", "calc", "end")
    assert workflow.predecessors["end"] == frozenset({"calc"})
    assert workflow.successors["start"] == ("calc",)
    assert workflow.ancestors["end"] == frozenset({"start", "calc"})
    assert set(workflow.templates["calc"]) == {"template"}
    assert isinstance(workflow.nodes["calc"], TemplateNode)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (5, "definition: expected a JSON object, got 5"),
        ({"nodes": []}, "name: required"),
        (
            flow([IN, {"id": "x", "type": "foo"}]),
            "nodes[1].type: unknown node type 'foo' (known: condition, http, in, intent, llm, out, template, workflow)",
        ),
        (flow([IN, {"id": "x"}]), "nodes[1].type: required"),
        (flow([IN, {"id": "calc", "type": "template"}]), "nodes[1].template: required"),
        (flow([IN, {"id": "", "type": "out", "output": ""}]), "nodes[1].id: must not be empty"),
        (flow([IN, {**OUT, "colour": "red"}]), "nodes[1].colour: unknown field"),
        (flow([IN, {"id": "a", "type": "llm", "prompt": 5}]), "nodes[1].prompt: expected a string"),
        (
            flow([IN, {"id": "a", "type": "llm", "prompt": "p", "memory_turns": 51}]),
            "nodes[1].memory_turns: must be at most 50, got 51",
        ),
        (
            {"name": "t", "visibility": "secret", "nodes": []},
            "visibility: expected 'private' or 'public', got 'secret'",
        ),
        (
            flow([{"id": "start", "type": "in", "inputs": [{"name": "h", "type": "float"}]}]),
            "nodes[0].inputs[0].type: expected 'text', 'number'",
        ),
        (flow([IN, OUT], [{"from": "start", "to": "x"}]), "edges[0].to: no node with id 'x'"),
        (flow([IN, OUT], [{"from": "start"}]), "edges[0].to: required"),
        (
            flow([IN, OUT, {**OUT}], line("start", "end")),
            "nodes[2].id: duplicate node id 'end'",
        ),
        (flow([OUT]), "a workflow needs exactly one 'in' node"),
        (flow([IN, {**IN, "id": "start2"}, OUT]), "a workflow needs exactly one 'in' node"),
        (flow([IN]), "a workflow needs at least one 'out' node"),
        (
            flow(
                [
                    IN,
                    {"id": "a", "type": "template", "template": "a"},
                    {"id": "b", "type": "template", "template": "b"},
                    OUT,
                ],
                [*line("start", "a", "b", "a"), *line("b", "end")],
            ),
            "workflow has a cycle: a -> b -> a",
        ),
        (
            flow(
                [IN, {"id": "calc", "type": "template", "template": "{{ 1 + }}"}, OUT],
                line("start", "calc", "end"),
            ),
            "nodes[1].template: syntax error at line 1: unexpected 'end of print statement'",
        ),
        (
            flow(
                [IN, {"id": "a", "type": "llm", "prompt": "ok", "system": "{% if %}"}, OUT],
                line("start", "a", "end"),
            ),
            "nodes[1].system: syntax error at line 1",
        ),
        (
            flow([IN, {**OUT, "output": "{{ x "}], line("start", "end")),
            "nodes[1].output: syntax error at line 1",
        ),
        (
            flow([IN, {**OUT, "id": "height"}], line("start", "height")),
            "nodes[1].id: 'height' is also an input name",
        ),
        (flow([IN, OUT]), "nodes[1]: node 'end' is not reachable from the 'in' node 'start'"),
        (
            flow([IN, {**OUT, "output": "{{ wieght }}"}], line("start", "end")),
            "nodes[1].output: 'wieght' is not an input or an upstream node",
        ),
        (
            flow(
                [
                    IN,
                    {"id": "calc", "type": "template", "template": "1"},
                    {**OUT, "output": "{{ calc.output }}"},
                ],
                [*line("start", "calc"), *line("start", "end")],
            ),
            "nodes[2].output: node 'calc' does not run before 'end'",
        ),
        (
            flow([IN, OUT], [*line("start", "end"), *line("start", "end")]),
            "edges[1]: duplicate edge start -> end",
        ),
        (
            flow([IN, OUT], [*line("start", "end"), *line("end", "start")]),
            "edges[1].to: the 'in' node 'start' cannot have incoming edges",
        ),
        (
            flow(
                [
                    {
                        "id": "start",
                        "type": "in",
                        "inputs": [{"name": "n", "type": "number", "default": "abc"}],
                    },
                    OUT,
                ],
                line("start", "end"),
            ),
            'nodes[0].inputs[0].default: expected a number, got "abc"',
        ),
        (
            flow(
                [{"id": "start", "type": "in", "inputs": [{"name": "a"}, {"name": "a"}]}, OUT],
                line("start", "end"),
            ),
            "nodes[0].inputs[1].name: duplicate input name 'a'",
        ),
    ],
)
def test_invalid_definitions_are_refused_with_path_and_reason(data: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_definition(copy.deepcopy(data))
    assert caught.value.message.startswith(message), caught.value.message


def test_templates_may_use_their_own_variables_loops_and_globals() -> None:
    template = (
        "{% set q = 1 %}{% for i in range(2) %}{{ loop.index }}{{ i }}{% endfor %}"
        "{{ q }}{{ nodes.start.output }}{{ start.height }}{{ height }}"
    )
    data = chain({**OUT, "output": template}, inputs=[{"name": "height"}])
    assert parse_definition(data).nodes[1].id == "end"
