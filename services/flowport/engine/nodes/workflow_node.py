"""The `workflow` node (LinkAI's app node): runs another published workflow of the account.

The child run's events are not forwarded: its tokens and node events stay inside, and the
node finishes once with the child's output. Its token usage counts towards this run.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Literal

from pydantic import Field

from flowport.engine.events import RunFailed, RunSucceeded
from flowport.engine.inputs import validate_inputs
from flowport.engine.nodes.base import NodeConfig, NodeContext, NodeOutput, restated
from flowport.errors import FlowportError, InvalidArgument, Unavailable


class TooDeep(InvalidArgument):
    """Workflows calling workflows went deeper than the run allows (often one calling itself)."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(
            f"workflow nodes nest deeper than {max_depth} levels (does a workflow call itself?)"
        )
        self.max_depth = max_depth

    def __reduce__(self) -> tuple[Any, ...]:
        # copy.copy (the runner names the node on a copy) rebuilds from max_depth.
        return (type(self), (self.max_depth,), self.__dict__)


class WorkflowNode(NodeConfig):
    """`output` is the other workflow's output text."""

    type: Literal["workflow"]
    # Only checked when the node runs: the workflow may be published after this one.
    workflow_id: str = Field(min_length=1)
    # The other workflow's input name -> template of its value.
    inputs: dict[str, str] = Field(default_factory=dict)

    def template_sources(self) -> dict[str, str]:
        return {f"inputs.{name}": source for name, source in self.inputs.items()}


async def run(node: WorkflowNode, ctx: NodeContext) -> NodeOutput:
    if ctx.load_workflow is None or ctx.run_workflow is None:
        raise Unavailable("workflow nodes cannot run here: no workflow loader is configured")
    target = await ctx.load_workflow(node.workflow_id)
    specs = {spec.name: spec for spec in target.in_node.inputs}
    raw: dict[str, Any] = {}
    for name in node.inputs:
        text = ctx.render(f"inputs.{name}")
        spec = specs.get(name)
        # Templates render text; an object input takes the JSON text of one.
        if spec is not None and spec.type == "object" and text.strip().startswith("{"):
            with contextlib.suppress(ValueError):
                raw[name] = json.loads(text)
                continue
        # Nothing rendered counts as not given, so the input's default or required applies.
        raw[name] = text if text != "" else None
    try:
        inputs = validate_inputs(target.in_node.inputs, raw)
    except InvalidArgument as exc:
        raise InvalidArgument(f"workflow {node.workflow_id}: {exc.message}") from None
    ctx.node_inputs = {"workflow_id": node.workflow_id, "inputs": inputs}

    batches = ctx.run_workflow(target, inputs)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            outcome = batch[-1]  # an outcome is always the last event
            if isinstance(outcome, RunSucceeded):
                return {"output": outcome.output, "usage": outcome.usage}
            if isinstance(outcome, RunFailed):
                raise _child_failure(node.workflow_id, outcome.error)
    raise FlowportError(f"workflow {node.workflow_id} ended without an outcome")


def _child_failure(workflow_id: str, error: FlowportError) -> FlowportError:
    if isinstance(error, TooDeep):
        # One clear message, not one "workflow x failed" per level of the recursion.
        return TooDeep(error.max_depth)
    return restated(error, f"workflow {workflow_id} failed: {error.message}")
