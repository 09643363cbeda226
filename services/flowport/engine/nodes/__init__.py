"""Node kinds: one module each, and the registry the runner dispatches on."""

from __future__ import annotations

from flowport.engine.nodes import in_node, llm_node, out_node, template_node
from flowport.engine.nodes.base import NodeContext, NodeExecutor, NodeOutput

EXECUTORS: dict[str, NodeExecutor] = {
    "in": in_node.run,
    "template": template_node.run,
    "llm": llm_node.run,
    "out": out_node.run,
}

__all__ = ["EXECUTORS", "NodeContext", "NodeExecutor", "NodeOutput"]
