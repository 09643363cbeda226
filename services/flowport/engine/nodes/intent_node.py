"""The `intent` node: the LLM classifies a text into one of the declared intents, a branch each."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import TYPE_CHECKING, Literal, Self

from pydantic import Field, field_validator

from flowport.engine.llm import NO_PROVIDER, ChatMessage, complete
from flowport.engine.nodes.base import ELSE, Model, NodeConfig, NodeContext, NodeOutput
from flowport.engine.nodes.llm_node import usage_record
from flowport.errors import InvalidArgument, Unavailable

if TYPE_CHECKING:
    from flowport.engine.nodes.in_node import InNode

# Reasoning models served without a separate reasoning field put their thoughts first.
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL)

SYSTEM_PROMPT = """\
You classify a user's message by its intent. The intents are:
{intents}

Answer with the name of the one intent the user's last message expresses, exactly as \
written above, and nothing else: no explanation, no punctuation. If none of them fits, \
answer: else"""


class Intent(Model):
    name: str = Field(min_length=1)
    # Tells the model what the intent covers; the name alone is often ambiguous.
    description: str = ""


class IntentNode(NodeConfig):
    """Chooses the branch named after the recognised intent, or `else`."""

    type: Literal["intent"]
    # A template of the text to classify; by default the in node's first text input.
    input: str | None = None
    intents: list[Intent] = Field(min_length=1)
    model: str | None = None
    memory: bool = False
    memory_turns: int = Field(default=10, ge=1, le=50)

    @field_validator("intents")
    @classmethod
    def _names_are_distinct(cls, intents: list[Intent]) -> list[Intent]:
        seen: dict[str, str] = {}
        for intent in intents:
            key = normalize(intent.name)
            if not key:
                raise ValueError(f"intent name {intent.name!r} has no letters or digits")
            if key == ELSE:
                raise ValueError(f"{ELSE!r} is the implicit fallback branch; name yours otherwise")
            if key in seen:
                raise ValueError(
                    f"intent names {seen[key]!r} and {intent.name!r} read the same to the matcher"
                )
            seen[key] = intent.name
        return intents

    def template_sources(self) -> dict[str, str]:
        return {"input": self.input} if self.input is not None else {}

    def branch_names(self) -> tuple[str, ...]:
        return (*(intent.name for intent in self.intents), ELSE)

    def completed(self, in_node: InNode) -> Self:
        if self.input is not None:
            return self
        texts = [spec.name for spec in in_node.inputs if spec.type == "text"]
        if not texts:
            raise InvalidArgument(
                "input: required: the 'in' node has no text input to classify by default"
            )
        # Through the in node's fields, so that any input name works, identifier or not.
        source = f'{{{{ nodes[{json.dumps(in_node.id)}]["output"][{json.dumps(texts[0])}] }}}}'
        return self.model_copy(update={"input": source})


async def run(node: IntentNode, ctx: NodeContext) -> NodeOutput:
    if ctx.llm is None:
        raise Unavailable(NO_PROVIDER)
    model = node.model or ctx.default_model
    listing = "\n".join(
        f"- {intent.name}: {intent.description}" if intent.description else f"- {intent.name}"
        for intent in node.intents
    )
    messages: list[ChatMessage] = [
        {"role": "system", "content": SYSTEM_PROMPT.format(intents=listing)}
    ]
    if node.memory:
        messages.extend(ctx.history[-2 * node.memory_turns :])
    messages.append({"role": "user", "content": ctx.render("input")})
    ctx.node_inputs = {"messages": messages, "model": model}
    # Temperature 0: the same message should land on the same branch every time. No
    # tokens are streamed: the answer is a label, not text for the user.
    answer = await complete(ctx.llm, messages=messages, model=model, temperature=0)
    intent = match_intent(answer.content, [intent.name for intent in node.intents])
    return {
        "output": intent,
        "branch": intent,
        "answer": answer.content,
        "model": model,
        "usage": usage_record(answer.usage, model),
    }


def match_intent(answer: str, names: list[str]) -> str:
    """The declared name the model's answer means, or `else`: case, spacing and
    punctuation do not matter ("Refund." is refund), anything more does."""
    key = normalize(_THINKING.sub("", answer))
    for name in names:
        if normalize(name) == key:
            return name
    return ELSE


def normalize(text: str) -> str:
    """Letters, marks and digits only, case-folded (NFKC first, so full-width forms match)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LMN")
