"""The `out` node: renders the run's output text."""

from __future__ import annotations

from typing import Literal

from flowport.engine.nodes.base import NodeConfig, NodeContext, NodeOutput


class OutNode(NodeConfig):
    """Renders the run's output."""

    type: Literal["out"]
    output: str

    def template_sources(self) -> dict[str, str]:
        return {"output": self.output}


def run(node: OutNode, ctx: NodeContext) -> NodeOutput:
    return {"output": ctx.render("output")}
