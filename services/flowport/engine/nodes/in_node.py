"""The `in` node: publishes the run's validated inputs to the rest of the workflow."""

from __future__ import annotations

from flowport.engine.definition import InNode
from flowport.engine.nodes.base import NodeContext, NodeOutput


async def run(node: InNode, ctx: NodeContext) -> NodeOutput:
    inputs = dict(ctx.inputs)
    ctx.node_inputs = inputs
    # Every input is a field (`start.height`), and `output` is all of them together.
    return {**inputs, "output": inputs}
