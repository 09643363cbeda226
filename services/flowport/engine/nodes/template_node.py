"""The `template` node: renders its Jinja2 template; the text is its output."""

from __future__ import annotations

from typing import Literal

from flowport.engine.nodes.base import NodeConfig, NodeContext, NodeOutput


class TemplateNode(NodeConfig):
    """Renders a Jinja2 template; `output` is the text."""

    type: Literal["template"]
    template: str

    def template_sources(self) -> dict[str, str]:
        return {"template": self.template}


def run(node: TemplateNode, ctx: NodeContext) -> NodeOutput:
    return {"output": ctx.render("template")}
