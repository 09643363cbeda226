"""Condition nodes: branches chosen by sandboxed expressions, untaken paths skipped, joins run."""

from __future__ import annotations

from typing import Any

import pytest

from flowport.engine.definition import parse_definition
from flowport.errors import InvalidArgument
from tests.engine.builders import (
    compiled,
    failed,
    finished,
    run_all,
    started,
    statuses,
    succeeded,
)

AGE_IN = {"id": "start", "type": "in", "inputs": [{"name": "age", "type": "number"}]}
COND = {
    "id": "cond",
    "type": "condition",
    "branches": [
        {"name": "adult", "when": "age >= 18"},
        {"name": "teen", "when": "age >= 13"},
    ],
}


def tmpl(node_id: str, text: str) -> dict[str, Any]:
    return {"id": node_id, "type": "template", "template": text}


def ages(extra_nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "ages",
        "nodes": [AGE_IN, COND, *extra_nodes],
        "edges": [{"from": "start", "to": "cond"}, *edges],
    }


# cond -adult-> a -> join ; cond -teen-> t -> join ; cond -else-> c1 -> c2 -> join ; join -> end
BRANCHES = ages(
    [
        tmpl("a", "adult"),
        tmpl("t", "teen"),
        tmpl("c1", "child"),
        tmpl("c2", "{{ c1.output }}!"),
        tmpl("join", "{{ a.output }}{{ t.output }}{{ c2.output }}"),
        {"id": "end", "type": "out", "output": "{{ join.output }} ({{ cond.output }})"},
    ],
    [
        {"from": "cond", "to": "a", "branch": "adult"},
        {"from": "cond", "to": "t", "branch": "teen"},
        {"from": "cond", "to": "c1", "branch": "else"},
        {"from": "c1", "to": "c2"},
        {"from": "a", "to": "join"},
        {"from": "t", "to": "join"},
        {"from": "c2", "to": "join"},
        {"from": "join", "to": "end"},
    ],
)


@pytest.mark.parametrize(
    ("age", "output", "ran", "skipped"),
    [
        (20, "adult (adult)", "a", {"t", "c1", "c2"}),
        (15, "teen (teen)", "t", {"a", "c1", "c2"}),
        (8, "child! (else)", "c2", {"a", "t"}),
    ],
)
async def test_first_true_branch_wins_and_the_others_are_skipped(
    age: int, output: str, ran: str, skipped: set[str]
) -> None:
    events = await run_all(compiled(BRANCHES), {"age": age})
    assert succeeded(events).output == output
    status = statuses(events)
    assert {n for n, s in status.items() if s == "skipped"} == skipped
    assert status[ran] == status["join"] == status["end"] == "succeeded"
    # A skipped node never starts; the join, with one live predecessor, runs once.
    assert not skipped & set(started(events))
    assert started(events).count("join") == 1
    branch = finished(events)["cond"].output
    assert branch == {"output": output.split("(")[1][:-1], "branch": output.split("(")[1][:-1]}


async def test_skipped_node_events_come_alone_and_say_so() -> None:
    events = await run_all(compiled(BRANCHES), {"age": 20})
    skip = finished(events)["c2"]
    assert (skip.status, skip.time_spend, skip.output, skip.error) == ("skipped", 0.0, None, None)
    # c2 is skipped only after c1 is: skipping travels down the graph in order.
    order = [e.node_id for e in events if hasattr(e, "status")]
    assert order.index("c1") < order.index("c2") < order.index("join")


async def test_a_join_whose_every_path_was_untaken_is_skipped_too() -> None:
    definition = ages(
        [
            tmpl("x", "x"),
            tmpl("y", "y"),
            tmpl("both", "{{ x.output }}{{ y.output }}"),
            {"id": "grown", "type": "out", "output": "grown {{ both.output }}"},
            {"id": "young", "type": "out", "output": "young"},
        ],
        [
            {"from": "cond", "to": "x", "branch": "adult"},
            {"from": "cond", "to": "y", "branch": "adult"},
            {"from": "x", "to": "both"},
            {"from": "y", "to": "both"},
            {"from": "both", "to": "grown"},
            {"from": "cond", "to": "young", "branch": "teen"},
            {"from": "cond", "to": "young", "branch": "else"},
        ],
    )
    young = await run_all(compiled(definition), {"age": 3})
    assert succeeded(young).output == "young"
    assert statuses(young) == {
        "start": "succeeded",
        "cond": "succeeded",
        "x": "skipped",
        "y": "skipped",
        "both": "skipped",
        "grown": "skipped",
        "young": "succeeded",
    }
    grown = await run_all(compiled(definition), {"age": 30})
    assert succeeded(grown).output == "grown xy"
    assert statuses(grown)["young"] == "skipped"


async def test_expressions_read_node_outputs_and_filters() -> None:
    definition = {
        "name": "len",
        "nodes": [
            {"id": "start", "type": "in", "inputs": [{"name": "text"}]},
            tmpl("words", "{{ text.split() | length }}"),
            {
                "id": "cond",
                "type": "condition",
                "branches": [{"name": "long", "when": "words.output | int > 2 and 'x' in text"}],
            },
            {"id": "yes", "type": "out", "output": "long"},
            {"id": "no", "type": "out", "output": "short"},
        ],
        "edges": [
            {"from": "start", "to": "words"},
            {"from": "words", "to": "cond"},
            {"from": "cond", "to": "yes", "branch": "long"},
            {"from": "cond", "to": "no", "branch": "else"},
        ],
    }
    assert succeeded(await run_all(compiled(definition), {"text": "a b x"})).output == "long"
    assert succeeded(await run_all(compiled(definition), {"text": "a b c"})).output == "short"


async def test_an_expression_failing_at_run_time_fails_the_node_naming_the_branch() -> None:
    definition = ages([{"id": "end", "type": "out", "output": "x"}], [])
    definition["edges"].append({"from": "cond", "to": "end", "branch": "else"})
    error = failed(await run_all(compiled(definition), {})).error  # no age given
    assert error.node_id == "cond"
    assert error.message == "node cond: branches[0].when: 'age' is undefined"


async def test_the_sandbox_holds_in_expressions() -> None:
    definition = ages([{"id": "end", "type": "out", "output": "{{ cond.output }}"}], [])
    definition["nodes"][1] = {
        "id": "cond",
        "type": "condition",
        "branches": [{"name": "escape", "when": "''.__class__.__mro__[1].__subclasses__()"}],
    }
    definition["edges"].append({"from": "cond", "to": "end", "branch": "escape"})
    definition["edges"].append({"from": "cond", "to": "end", "branch": "else"})
    events = await run_all(compiled(definition), {"age": 1})
    # The attribute is refused: it reads as undefined, so calling it fails the node.
    assert failed(events).node_id == "cond"


def edges_error(edges: list[dict[str, Any]], nodes: list[dict[str, Any]] | None = None) -> str:
    definition = ages(nodes or [{"id": "end", "type": "out", "output": "x"}], edges)
    with pytest.raises(InvalidArgument) as refused:
        parse_definition(definition)
    return refused.value.message


def test_edges_out_of_a_condition_must_name_a_known_branch() -> None:
    assert edges_error([{"from": "cond", "to": "end"}]) == (
        "edges[1]: the edge cond -> end leaves condition node 'cond', so it must name its"
        " branch (one of: adult, teen, else)"
    )
    assert edges_error([{"from": "cond", "to": "end", "branch": "senior"}]) == (
        "edges[1].branch: condition node 'cond' has no branch 'senior'"
        " (branches: adult, teen, else)"
    )


def test_only_branching_nodes_have_branches_on_their_edges() -> None:
    message = edges_error(
        [{"from": "cond", "to": "x", "branch": "adult"}, {"from": "x", "to": "end", "branch": "a"}],
        [tmpl("x", "x"), {"id": "end", "type": "out", "output": "x"}],
    )
    assert message == (
        "edges[2].branch: 'x' is a template node, which has no branches"
        " (only condition and intent nodes do)"
    )


@pytest.mark.parametrize(
    ("branches", "message"),
    [
        ([], "nodes[1].branches: must not be empty"),
        (
            [{"name": "else", "when": "true"}],
            "nodes[1].branches: 'else' is the implicit fallback branch; name yours otherwise",
        ),
        (
            [{"name": "a", "when": "true"}, {"name": "a", "when": "false"}],
            "nodes[1].branches: duplicate branch name 'a'",
        ),
        ([{"name": "a", "when": "age >="}], "nodes[1].branches[0].when: syntax error"),
        (
            [{"name": "a", "when": "agee > 1"}],
            "nodes[1].branches[0].when: 'agee' is not an input or an upstream node",
        ),
        (
            [{"name": "a", "when": "later.output"}],
            "nodes[1].branches[0].when: node 'later' does not run before 'cond'",
        ),
        ([{"name": "a", "when": "x }}{{ y"}], "nodes[1].branches[0].when: syntax error"),
    ],
)
def test_bad_branches_are_refused_at_save_time(branches: list[Any], message: str) -> None:
    definition = ages(
        [{"id": "later", "type": "out", "output": "x"}],
        [{"from": "cond", "to": "later", "branch": "else"}],
    )
    definition["nodes"][1] = {"id": "cond", "type": "condition", "branches": branches}
    with pytest.raises(InvalidArgument) as refused:
        parse_definition(definition)
    assert refused.value.message.startswith(message)
