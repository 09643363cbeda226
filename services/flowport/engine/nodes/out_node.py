"""The `out` node: renders the run's output text."""

from __future__ import annotations

from flowport.engine.definition import OutNode
from flowport.engine.nodes.base import NodeContext, NodeOutput


async def run(node: OutNode, ctx: NodeContext) -> NodeOutput:
    return {"output": ctx.render("output")}
