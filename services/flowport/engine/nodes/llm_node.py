"""The `llm` node: renders its prompt, asks the provider and streams the answer as tokens."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import Field

from flowport.engine.llm import NO_PROVIDER, ChatMessage, ContentPart, TokenUsage, complete
from flowport.engine.nodes.base import NodeConfig, NodeContext, NodeOutput
from flowport.errors import Unavailable

if TYPE_CHECKING:
    from flowport.engine.nodes.in_node import InNode


class LlmNode(NodeConfig):
    """Asks the LLM provider; streams its tokens."""

    type: Literal["llm"]
    prompt: str
    system: str | None = None
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    memory: bool = False
    memory_turns: int = Field(default=10, ge=1, le=50)
    # Templates of image URLs sent with the prompt (OpenAI's vision format); by default
    # every `image` input of the workflow. An empty URL (an image not given) is left out.
    images: list[str] | None = None

    def template_sources(self) -> dict[str, str]:
        fields = {"prompt": self.prompt}
        if self.system is not None:
            fields["system"] = self.system
        for index, image in enumerate(self.images or ()):
            fields[f"images[{index}]"] = image
        return fields

    def completed(self, in_node: InNode) -> Self:
        if self.images is not None:
            return self
        # Through the in node's fields, so that any input name works, identifier or not.
        images = [
            f'{{{{ nodes[{json.dumps(in_node.id)}]["output"][{json.dumps(spec.name)}] }}}}'
            for spec in in_node.inputs
            if spec.type == "image"
        ]
        return self.model_copy(update={"images": images})


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
    messages.append({"role": "user", "content": _user_content(node, ctx)})
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


def _user_content(node: LlmNode, ctx: NodeContext) -> str | list[ContentPart]:
    """The prompt, with the node's images as `image_url` parts when there are any."""
    prompt = ctx.render("prompt")
    urls = [ctx.render(f"images[{index}]") for index in range(len(node.images or ()))]
    urls = [url.strip() for url in urls if url.strip()]
    if not urls:
        return prompt
    parts: list[ContentPart] = [{"type": "text", "text": prompt}]
    parts.extend({"type": "image_url", "image_url": {"url": url}} for url in urls)
    return parts
