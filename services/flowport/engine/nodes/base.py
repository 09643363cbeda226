"""What a node executor gets from the runner, and what it returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2

from flowport.engine import templating
from flowport.engine.llm import ChatMessage, LlmClient

# An executor returns the node's output fields: always "output", plus what its kind adds.
NodeOutput = dict[str, Any]
NodeExecutor = Callable[[Any, "NodeContext"], Awaitable[NodeOutput]]


@dataclass(slots=True)
class NodeContext:
    """One node's view of its run."""

    node_id: str
    # The run's validated inputs.
    inputs: Mapping[str, Any]
    # Output fields of the finished nodes this node may read (its ancestors).
    outputs: Mapping[str, Mapping[str, Any]]
    # This node's compiled templates by field name.
    templates: Mapping[str, jinja2.Template]
    # Sends a Token event for this node: (content, reasoning).
    emit_token: Callable[[str, str | None], None]
    llm: LlmClient | None
    default_model: str
    # The session's earlier turns, oldest first, user/assistant pairs; for memory=true.
    history: Sequence[ChatMessage] = ()
    # What the node consumed, for its NodeFinished event and the run record; set by the
    # executor where that says more than the node's definition (a rendered prompt).
    node_inputs: dict[str, Any] | None = None
    _context: dict[str, Any] | None = field(default=None, repr=False)

    def render(self, template_field: str) -> str:
        """Renders one of this node's templates; failures name the node."""
        if self._context is None:
            self._context = templating.build_context(self.inputs, self.outputs)
        return templating.render(
            self.templates[template_field], self._context, node_id=self.node_id
        )
