"""The `llm` node: renders its prompt, asks the provider and streams the answer as tokens."""

from __future__ import annotations

import contextlib

from flowport.engine.definition import LlmNode
from flowport.engine.llm import NO_PROVIDER, ChatMessage
from flowport.engine.nodes.base import NodeContext, NodeOutput
from flowport.errors import Unavailable


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

    content: list[str] = []
    reasoning: list[str] = []
    stream = ctx.llm.stream_chat(messages=messages, model=model, temperature=node.temperature)
    # aclosing: a cancelled node closes the provider's HTTP stream at once, not at GC time.
    async with contextlib.aclosing(stream):
        async for delta in stream:
            if delta.reasoning:
                reasoning.append(delta.reasoning)
            content.append(delta.content)
            ctx.emit_token(delta.content, delta.reasoning)
    return {
        "output": "".join(content),
        "reasoning": "".join(reasoning) or None,
        "model": model,
    }
