"""The `in` node: declares the inputs, and publishes the validated ones to the workflow."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from flowport.engine.nodes.base import Model, NodeConfig, NodeContext, NodeOutput

InputType = Literal["text", "number", "boolean", "image", "file", "object"]


class InputSpec(Model):
    """One input the `in` node declares."""

    name: str = Field(min_length=1)
    type: InputType = "text"
    required: bool = False
    max_length: int | None = Field(default=None, ge=1)
    default: Any = None
    description: str = ""


class InNode(NodeConfig):
    """The run's start: declares the inputs."""

    type: Literal["in"]
    inputs: list[InputSpec] = Field(default_factory=list)


def run(node: InNode, ctx: NodeContext) -> NodeOutput:
    inputs = dict(ctx.inputs)
    ctx.node_inputs = inputs
    # Every input is a field (`start.height`), and `output` is all of them together.
    return {**inputs, "output": inputs}
