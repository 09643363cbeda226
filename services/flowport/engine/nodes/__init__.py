"""Node kinds: one module each (its config model and executor), and the registry of them."""

from __future__ import annotations

from typing import Any

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
    ImmediateExecutor,
    NodeConfig,
    NodeContext,
    NodeExecutor,
    NodeOutput,
    WorkflowLoader,
)

# Kinds that do no I/O: their executors return the output at once. A run of these alone
# executes in one synchronous pass (runner.py), with no task, queue or timeout per node.
IMMEDIATE: dict[str, ImmediateExecutor] = {
    "in": in_node.run,
    "template": template_node.run,
    "out": out_node.run,
    "condition": condition_node.run,
}


def _awaitable(run: ImmediateExecutor) -> NodeExecutor:
    async def executor(node: Any, ctx: NodeContext) -> NodeOutput:
        return run(node, ctx)

    return executor


EXECUTORS: dict[str, NodeExecutor] = {
    **{kind: _awaitable(run) for kind, run in IMMEDIATE.items()},
    "llm": llm_node.run,
    "intent": intent_node.run,
    "http": http_node.run,
    "workflow": workflow_node.run,
}

__all__ = [
    "ELSE",
    "EXECUTORS",
    "IMMEDIATE",
    "ChildRunner",
    "ImmediateExecutor",
    "NodeConfig",
    "NodeContext",
    "NodeExecutor",
    "NodeOutput",
    "WorkflowLoader",
]
