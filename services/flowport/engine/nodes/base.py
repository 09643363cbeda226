"""What every node kind shares: its config's base model, its view of the run, its result."""

from __future__ import annotations

import copy
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Self

import jinja2
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flowport.engine import templating
from flowport.engine.llm import ChatMessage, LlmClient
from flowport.errors import FlowportError
from flowport.outbound import Outbound

if TYPE_CHECKING:
    from flowport.engine.definition import CompiledWorkflow
    from flowport.engine.events import RunEvent
    from flowport.engine.nodes.in_node import InNode

# The branch a branching node (condition, intent) takes when nothing else matches.
ELSE = "else"

# An executor returns the node's output fields: always "output", plus what its kind adds.
NodeOutput = dict[str, Any]
NodeExecutor = Callable[[Any, "NodeContext"], Awaitable[NodeOutput]]
# The executor of a kind that does no I/O: the output, at once.
ImmediateExecutor = Callable[[Any, "NodeContext"], NodeOutput]
# Finds the newest published version of a workflow by id, for workflow nodes; NotFound
# when the caller may not run it.
WorkflowLoader = Callable[[str], Awaitable["CompiledWorkflow"]]
# Runs another workflow as a child of the current run, on the given validated inputs.
ChildRunner = Callable[["CompiledWorkflow", dict[str, Any]], AsyncGenerator[list["RunEvent"], None]]


def restated(error: FlowportError, message: str, *, node_id: str | None = None) -> FlowportError:
    """`error` with another message: a copy, so that its class (the status code) and any
    fields its class adds stay as they were."""
    copied = copy.copy(error)
    copied.message = message
    copied.node_id = node_id
    copied.args = (message,)
    return copied


class Model(BaseModel):
    # Unknown fields are refused: a misspelt "temprature" must not be ignored silently.
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeConfig(Model):
    """Fields every node kind has. Each kind adds `type: Literal[...]` and its own fields."""

    id: str = Field(min_length=1)
    name: str
    # "continue": a failure does not end the run; the node finishes as failed with
    # {"output": default_output, "error": message} as its fields, and the run goes on.
    on_error: Literal["fail", "continue"] = "fail"
    default_output: Any = None

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and isinstance(data.get("id"), str):
            return {**data, "name": data["id"]}
        return data

    def template_sources(self) -> dict[str, str]:
        """The node's fields that are Jinja2 templates, by their path in the node."""
        return {}

    def expression_sources(self) -> dict[str, str]:
        """The node's fields that are Jinja2 expressions, by their path in the node."""
        return {}

    def branch_names(self) -> tuple[str, ...]:
        """The names of the branches its outgoing edges choose from; () for a node that
        does not branch (all of its outgoing edges are taken)."""
        return ()

    def completed(self, in_node: InNode) -> Self:
        """The node with defaults that depend on the rest of the workflow filled in;
        InvalidArgument (without the node's path) when they cannot be."""
        return self


@dataclass(slots=True)
class NodeContext:
    """One node's view of its run."""

    node_id: str
    # The run's validated inputs.
    inputs: Mapping[str, Any]
    # Output fields of the finished nodes this node may read (its ancestors that ran).
    outputs: Mapping[str, Mapping[str, Any]]
    # This node's compiled templates and expressions by their path in the node.
    templates: Mapping[str, jinja2.Template]
    # Sends a Token event for this node: (content, reasoning).
    emit_token: Callable[[str, str | None], None]
    llm: LlmClient | None
    default_model: str
    # http nodes call through it; whoever runs the workflow owns and closes it.
    outbound: Outbound
    # The session's earlier turns, oldest first, user/assistant pairs; for memory=true.
    history: Sequence[ChatMessage] = ()
    expressions: Mapping[str, jinja2.environment.TemplateExpression] = field(default_factory=dict)
    # Ancestors that were skipped (on branches not taken): undefined in templates.
    skipped: frozenset[str] = frozenset()
    load_workflow: WorkflowLoader | None = None
    # Runs another workflow one level deeper; its events end with RunSucceeded or
    # RunFailed. Raises when the nesting would be too deep.
    run_workflow: ChildRunner | None = None
    # What the node consumed, for its NodeFinished event and the run record; set by the
    # executor where that says more than the node's definition (a rendered prompt).
    node_inputs: dict[str, Any] | None = None
    _context: dict[str, Any] | None = field(default=None, repr=False)

    def render(self, template_field: str) -> str:
        """Renders one of this node's templates; failures name the node."""
        return templating.render(
            self.templates[template_field], self._template_context(), node_id=self.node_id
        )

    def evaluate(self, expression_field: str) -> Any:
        """Evaluates one of this node's expressions; failures name the node and the field."""
        return templating.evaluate(
            self.expressions[expression_field],
            self._template_context(),
            node_id=self.node_id,
            where=expression_field,
        )

    def _template_context(self) -> dict[str, Any]:
        if self._context is None:
            self._context = templating.build_context(self.inputs, self.outputs, self.skipped)
        return self._context
