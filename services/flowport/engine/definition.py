"""A workflow definition (API.md, "Workflow definition"): models, checks, compiled form."""

from __future__ import annotations

import graphlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import jinja2
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from flowport.engine import templating
from flowport.engine.inputs import coerce_value
from flowport.errors import InvalidArgument

InputType = Literal["text", "number", "boolean", "image", "file", "object"]


class _Model(BaseModel):
    # Unknown fields are refused: a misspelt "temprature" must not be ignored silently.
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Model):
    """One input the `in` node declares."""

    name: str = Field(min_length=1)
    type: InputType = "text"
    required: bool = False
    max_length: int | None = Field(default=None, ge=1)
    default: Any = None
    description: str = ""


class _NodeBase(_Model):
    id: str = Field(min_length=1)
    name: str

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and isinstance(data.get("id"), str):
            return {**data, "name": data["id"]}
        return data


class InNode(_NodeBase):
    """The run's start: declares the inputs."""

    type: Literal["in"]
    inputs: list[InputSpec] = []


class TemplateNode(_NodeBase):
    """Renders a Jinja2 template; `output` is the text."""

    type: Literal["template"]
    template: str


class LlmNode(_NodeBase):
    """Asks the LLM provider; streams its tokens."""

    type: Literal["llm"]
    prompt: str
    system: str | None = None
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    memory: bool = False
    memory_turns: int = Field(default=10, ge=1, le=50)


class OutNode(_NodeBase):
    """Renders the run's output."""

    type: Literal["out"]
    output: str


Node = Annotated[InNode | TemplateNode | LlmNode | OutNode, Field(discriminator="type")]
NODE_TYPES = ("in", "llm", "out", "template")


class Edge(_Model):
    """`{"from": a, "to": b}`: b runs after a has finished."""

    model_config = ConfigDict(populate_by_name=True)

    source: str = Field(alias="from")
    target: str = Field(alias="to")


class WorkflowDefinition(_Model):
    name: str = Field(min_length=1)
    visibility: Literal["private", "public"] = "private"
    description: str = ""
    nodes: list[Node]
    edges: list[Edge] = []


@dataclass(frozen=True, slots=True)
class CompiledWorkflow:
    """What a run needs, worked out once per published version so that a run parses nothing."""

    definition: WorkflowDefinition
    nodes: Mapping[str, Node]
    in_node: InNode
    # A topological order: every node after all of its predecessors.
    order: tuple[str, ...]
    predecessors: Mapping[str, frozenset[str]]
    successors: Mapping[str, tuple[str, ...]]
    # Everything upstream of a node: exactly what its templates may read, so that what a
    # template sees does not depend on which concurrent branch happened to finish first.
    ancestors: Mapping[str, frozenset[str]]
    # node id -> template field ("template", "prompt", ...) -> compiled template
    templates: Mapping[str, Mapping[str, jinja2.Template]]

    def sorter(self) -> graphlib.TopologicalSorter[str]:
        """A fresh ready-set scheduler over the nodes, for one run."""
        sorter = graphlib.TopologicalSorter(self.predecessors)
        sorter.prepare()
        return sorter


def parse_definition(data: object) -> WorkflowDefinition:
    """Validates a definition as the API received it; InvalidArgument names the problem and
    its JSON path. Every check a run relies on happens here, at save time."""
    try:
        definition = WorkflowDefinition.model_validate(data)
    except ValidationError as exc:
        raise InvalidArgument(_describe(exc.errors()[0])) from None
    compile_workflow(definition)
    return definition


def compile_workflow(definition: WorkflowDefinition) -> CompiledWorkflow:
    """Checks the graph and compiles every template; the caller caches the result per version."""
    nodes = _index_nodes(definition)
    in_node = _the_in_node(definition)
    input_names = _check_inputs(definition, in_node)
    predecessors, successors = _check_edges(definition, nodes, in_node)
    order = _topological_order(predecessors)
    ancestors: dict[str, frozenset[str]] = {}
    for node_id in order:
        upstream = set(predecessors[node_id])
        for parent in predecessors[node_id]:
            upstream |= ancestors[parent]
        ancestors[node_id] = frozenset(upstream)
    for index, node in enumerate(definition.nodes):
        if node.id != in_node.id and in_node.id not in ancestors[node.id]:
            raise InvalidArgument(
                f"nodes[{index}]: node {node.id!r} is not reachable from the 'in' node"
                f" {in_node.id!r}"
            )
    templates = {
        node.id: _compile_templates(index, node, input_names, nodes, ancestors[node.id])
        for index, node in enumerate(definition.nodes)
    }
    return CompiledWorkflow(
        definition=definition,
        nodes=nodes,
        in_node=in_node,
        order=order,
        predecessors=predecessors,
        successors=successors,
        ancestors=ancestors,
        templates=templates,
    )


def template_sources(node: Node) -> dict[str, str]:
    """The node's fields that are templates, by field name."""
    match node:
        case TemplateNode():
            return {"template": node.template}
        case LlmNode():
            fields = {"prompt": node.prompt}
            if node.system is not None:
                fields["system"] = node.system
            return fields
        case OutNode():
            return {"output": node.output}
        case InNode():
            return {}


def _index_nodes(definition: WorkflowDefinition) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    for index, node in enumerate(definition.nodes):
        if node.id in nodes:
            raise InvalidArgument(f"nodes[{index}].id: duplicate node id {node.id!r}")
        if node.id == templating.NODES_KEY:
            raise InvalidArgument(
                f"nodes[{index}].id: {node.id!r} is reserved (templates see the nodes under it)"
            )
        nodes[node.id] = node
    return nodes


def _the_in_node(definition: WorkflowDefinition) -> InNode:
    in_nodes = [node for node in definition.nodes if isinstance(node, InNode)]
    if len(in_nodes) != 1:
        raise InvalidArgument("a workflow needs exactly one 'in' node")
    if not any(isinstance(node, OutNode) for node in definition.nodes):
        raise InvalidArgument("a workflow needs at least one 'out' node")
    return in_nodes[0]


def _check_inputs(definition: WorkflowDefinition, in_node: InNode) -> set[str]:
    node_index = definition.nodes.index(in_node)
    names: set[str] = set()
    for index, spec in enumerate(in_node.inputs):
        path = f"nodes[{node_index}].inputs[{index}]"
        if spec.name in names:
            raise InvalidArgument(f"{path}.name: duplicate input name {spec.name!r}")
        if spec.name == templating.NODES_KEY:
            raise InvalidArgument(
                f"{path}.name: {spec.name!r} is reserved (templates see the nodes under it)"
            )
        if spec.default is not None:
            try:
                coerce_value(spec, spec.default)
            except ValueError as exc:
                raise InvalidArgument(f"{path}.default: {exc}") from None
        names.add(spec.name)
    for index, node in enumerate(definition.nodes):
        # Inputs and nodes share the template namespace: `{{ x }}` must mean one thing.
        if node.id in names:
            raise InvalidArgument(
                f"nodes[{index}].id: {node.id!r} is also an input name"
                " (inputs and nodes share the template namespace)"
            )
    return names


def _check_edges(
    definition: WorkflowDefinition, nodes: Mapping[str, Node], in_node: InNode
) -> tuple[dict[str, frozenset[str]], dict[str, tuple[str, ...]]]:
    predecessors: dict[str, set[str]] = {node_id: set() for node_id in nodes}
    successors: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for index, edge in enumerate(definition.edges):
        for key, node_id in (("from", edge.source), ("to", edge.target)):
            if node_id not in nodes:
                raise InvalidArgument(f"edges[{index}].{key}: no node with id {node_id!r}")
        if edge.target == in_node.id:
            raise InvalidArgument(
                f"edges[{index}].to: the 'in' node {in_node.id!r} cannot have incoming edges"
            )
        if edge.source in predecessors[edge.target]:
            raise InvalidArgument(f"edges[{index}]: duplicate edge {edge.source} -> {edge.target}")
        predecessors[edge.target].add(edge.source)
        successors[edge.source].append(edge.target)
    return (
        {node_id: frozenset(preds) for node_id, preds in predecessors.items()},
        {node_id: tuple(succs) for node_id, succs in successors.items()},
    )


def _topological_order(predecessors: Mapping[str, frozenset[str]]) -> tuple[str, ...]:
    try:
        return tuple(graphlib.TopologicalSorter(predecessors).static_order())
    except graphlib.CycleError as exc:
        # args[1] lists the cycle with its first node repeated at the end, in edge order.
        cycle: list[str] = exc.args[1]
        raise InvalidArgument(f"workflow has a cycle: {' -> '.join(cycle)}") from None


def _compile_templates(
    index: int,
    node: Node,
    input_names: set[str],
    nodes: Mapping[str, Node],
    ancestors: frozenset[str],
) -> dict[str, jinja2.Template]:
    visible = (
        input_names | ancestors | {templating.NODES_KEY} | set(templating.environment().globals)
    )
    compiled: dict[str, jinja2.Template] = {}
    for field, source in template_sources(node).items():
        path = f"nodes[{index}].{field}"
        try:
            compiled[field] = templating.compile_template(source)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{path}: {exc.message}") from None
        # A name no input or upstream node provides would render as nothing at run time;
        # catching it here is kinder than a blank in a prompt.
        for name in sorted(templating.referenced_names(source) - visible):
            if name in nodes:
                raise InvalidArgument(
                    f"{path}: node {name!r} does not run before {node.id!r}"
                    f" (add an edge from {name!r})"
                )
            raise InvalidArgument(f"{path}: {name!r} is not an input or an upstream node")
    return compiled


# How pydantic's error types read to a person writing a definition.
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "list_type": "a list",
    "dict_type": "a JSON object",
    "model_type": "a JSON object",
    "model_attributes_type": "a JSON object",
}


def _describe(error: ErrorDetails) -> str:
    """One pydantic error as `path: problem`."""
    path = _render_path(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "union_tag_invalid":
        known = ", ".join(NODE_TYPES)
        return f"{path}.type: unknown node type {ctx.get('tag')!r} (known: {known})"
    if kind == "union_tag_not_found":
        return f"{path}.type: required"
    if kind == "missing":
        return f"{path}: required"
    if kind == "extra_forbidden":
        return f"{path}: unknown field"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return f"{path}: must not be empty"
    if kind == "greater_than_equal":
        return f"{path}: must be at least {ctx.get('ge')}, got {_short(error['input'])}"
    if kind == "less_than_equal":
        return f"{path}: must be at most {ctx.get('le')}, got {_short(error['input'])}"
    if kind == "literal_error":
        return f"{path}: expected {ctx.get('expected')}, got {_short(error['input'])}"
    if kind in _EXPECTED:
        return f"{path}: expected {_EXPECTED[kind]}, got {_short(error['input'])}"
    return f"{path}: {error['msg'][:1].lower()}{error['msg'][1:]}"


def _render_path(loc: Sequence[int | str]) -> str:
    """('nodes', 2, 'llm', 'prompt') -> 'nodes[2].prompt'."""
    path = ""
    for position, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif position >= 2 and loc[position - 2] == "nodes" and isinstance(loc[position - 1], int):
            # pydantic puts the discriminator's value (the node type) into the path; a
            # person reads nodes[2].prompt, not nodes[2].llm.prompt.
            continue
        else:
            path += f".{part}" if path else part
    return path or "definition"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
