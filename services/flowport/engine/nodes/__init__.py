"""Node kinds: one module each (its config model and executor), and the registry of them."""

from __future__ import annotations

from flowport.engine.nodes import (
    condition_node,
    http_node,
    in_node,
    intent_node,
    llm_node,
    out_node,
    template_node,
    workflow_node,
)
from flowport.engine.nodes.base import (
    ELSE,
    ChildRunner,
    NodeConfig,
    NodeContext,
    NodeExecutor,
    NodeOutput,
    WorkflowLoader,
)

EXECUTORS: dict[str, NodeExecutor] = {
    "in": in_node.run,
    "template": template_node.run,
    "llm": llm_node.run,
    "out": out_node.run,
    "condition": condition_node.run,
    "intent": intent_node.run,
    "http": http_node.run,
    "workflow": workflow_node.run,
}

__all__ = [
    "ELSE",
    "EXECUTORS",
    "ChildRunner",
    "NodeConfig",
    "NodeContext",
    "NodeExecutor",
    "NodeOutput",
    "WorkflowLoader",
]
