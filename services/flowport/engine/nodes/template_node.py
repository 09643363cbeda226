"""The `template` node: renders its Jinja2 template; the text is its output."""

from __future__ import annotations

from flowport.engine.definition import TemplateNode
from flowport.engine.nodes.base import NodeContext, NodeOutput


async def run(node: TemplateNode, ctx: NodeContext) -> NodeOutput:
    return {"output": ctx.render("template")}
