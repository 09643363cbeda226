"""The `llm` node: renders its prompt, asks the provider and streams the answer as tokens."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from flowport.engine.llm import NO_PROVIDER, ChatMessage, TokenUsage, complete
from flowport.engine.nodes.base import NodeConfig, NodeContext, NodeOutput
from flowport.errors import Unavailable


class LlmNode(NodeConfig):
    """Asks the LLM provider; streams its tokens."""

    type: Literal["llm"]
    prompt: str
    system: str | None = None
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    memory: bool = False
    memory_turns: int = Field(default=10, ge=1, le=50)

    def template_sources(self) -> dict[str, str]:
        fields = {"prompt": self.prompt}
        if self.system is not None:
            fields["system"] = self.system
        return fields


async def run(node: LlmNode, ctx: NodeContext) -> NodeOutput:
    if ctx.llm is None:
        raise Unavailable(NO_PROVIDER)
    model = node.model or ctx.default_model
    messages: list[ChatMessage] = []
    if "system" in ctx.templates:
        messages.append({"role": "system", "content": ctx.render("system")})
    if node.memory:
        # One turn is a user message and the answer to it.
        messages.extend(ctx.history[-2 * node.memory_turns :])
    messages.append({"role": "user", "content": ctx.render("prompt")})
    ctx.node_inputs = {"messages": messages, "model": model, "temperature": node.temperature}
    answer = await complete(
        ctx.llm,
        messages=messages,
        model=model,
        temperature=node.temperature,
        on_delta=ctx.emit_token,
    )
    return {
        "output": answer.content,
        "reasoning": answer.reasoning,
        "model": model,
        "usage": usage_record(answer.usage, model),
    }


def usage_record(usage: TokenUsage | None, model: str) -> dict[str, Any] | None:
    """What a node keeps of a call's usage (the run record shows it per node)."""
    return None if usage is None else {**usage, "model": model}
