"""Small workflow definitions for the engine tests."""

from __future__ import annotations

import itertools
from typing import Any

from flowport.engine.definition import CompiledWorkflow, compile_workflow, parse_definition

BMI: dict[str, Any] = {
    "name": "BMI",
    "visibility": "private",
    "nodes": [
        {
            "id": "start",
            "type": "in",
            "name": "开始",
            "inputs": [
                {"name": "height", "type": "number", "required": True},
                {"name": "weight", "type": "number", "required": True},
            ],
        },
        {
            "id": "calc",
            "type": "template",
            "name": "计算",
            "template": "{{ (weight / (height * height)) | round(2) }}",
        },
        {
            "id": "end",
            "type": "out",
            "name": "结束(输出)1",
            "output": "您的BMI值是{{ calc.output }}",
        },
    ],
    "edges": [{"from": "start", "to": "calc"}, {"from": "calc", "to": "end"}],
}


def chain(*nodes: dict[str, Any], inputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """in -> nodes... in a line; the last one should be an out node."""
    start = {"id": "start", "type": "in", "inputs": inputs or [{"name": "text"}]}
    all_nodes = [start, *nodes]
    edges = [{"from": a["id"], "to": b["id"]} for a, b in itertools.pairwise(all_nodes)]
    return {"name": "test", "nodes": all_nodes, "edges": edges}


def compiled(data: dict[str, Any]) -> CompiledWorkflow:
    return compile_workflow(parse_definition(data))
