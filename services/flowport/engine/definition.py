"""A workflow definition (docs/api.md and docs/nodes.md): models, checks, compiled form."""

from __future__ import annotations

import graphlib
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Annotated, Literal

import jinja2
from pydantic import ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from flowport.engine import templating
from flowport.engine.inputs import coerce_value
from flowport.engine.nodes import EXECUTORS, IMMEDIATE
from flowport.engine.nodes.base import Model
from flowport.engine.nodes.condition_node import Branch, ConditionNode
from flowport.engine.nodes.http_node import HttpNode
from flowport.engine.nodes.in_node import InNode, InputSpec, InputType
from flowport.engine.nodes.intent_node import Intent, IntentNode
from flowport.engine.nodes.llm_node import LlmNode
from flowport.engine.nodes.out_node import OutNode
from flowport.engine.nodes.template_node import TemplateNode
from flowport.engine.nodes.workflow_node import WorkflowNode
from flowport.errors import InvalidArgument

__all__ = [
    "NODE_TYPES",
    "Branch",
    "CompiledWorkflow",
    "ConditionNode",
    "Edge",
    "HttpNode",
    "InNode",
    "InputSpec",
    "InputType",
    "Intent",
    "IntentNode",
    "LlmNode",
    "Node",
    "OutNode",
    "TemplateNode",
    "WorkflowDefinition",
    "WorkflowNode",
    "compile_workflow",
    "parse_definition",
]

Node = Annotated[
    InNode
    | TemplateNode
    | LlmNode
    | OutNode
    | ConditionNode
    | IntentNode
    | HttpNode
    | WorkflowNode,
    Field(discriminator="type"),
]
NODE_TYPES = tuple(sorted(EXECUTORS))


class Edge(Model):
    """`{"from": a, "to": b}`: b runs after a has finished. An edge out of a branching node
    (condition, intent) names the branch it belongs to: `"branch": "adult"`."""

    model_config = ConfigDict(populate_by_name=True)

    source: str = Field(alias="from")
    target: str = Field(alias="to")
    branch: str | None = Field(default=None, min_length=1)


class WorkflowDefinition(Model):
    name: str = Field(min_length=1)
    visibility: Literal["private", "public"] = "private"
    description: str = ""
    # Seconds a run may take; past it, running nodes are cancelled and the run fails (504).
    timeout_s: float | None = Field(default=None, gt=0)
    # Where the end of each of the owner's runs is POSTed, signed (a call's own webhook_url
    # takes its place). Its address is checked at each call, as DNS answers change.
    webhook_url: str | None = None
    nodes: list[Node]
    edges: list[Edge] = Field(default_factory=list)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url


@dataclass(frozen=True, slots=True)
class CompiledWorkflow:
    """What a run needs, worked out once per published version so that a run parses nothing."""

    definition: WorkflowDefinition
    # The nodes with workflow-dependent defaults filled in (NodeConfig.completed).
    nodes: Mapping[str, Node]
    in_node: InNode
    # A topological order: every node after all of its predecessors.
    order: tuple[str, ...]
    predecessors: Mapping[str, frozenset[str]]
    successors: Mapping[str, tuple[str, ...]]
    # The edges into each node: whether it runs depends on which of them were taken.
    incoming: Mapping[str, tuple[Edge, ...]]
    # Everything upstream of a node: exactly what its templates may read, so that what a
    # template sees does not depend on which concurrent branch happened to finish first.
    ancestors: Mapping[str, frozenset[str]]
    # node id -> template field ("template", "prompt", "headers.X-Key", ...) -> template
    templates: Mapping[str, Mapping[str, jinja2.Template]]
    # node id -> expression field ("branches[0].when") -> compiled expression
    expressions: Mapping[str, Mapping[str, jinja2.environment.TemplateExpression]]
    # Every node is of a kind that does no I/O: a run may go through `order` in one
    # synchronous pass.
    immediate: bool = False
    # The nodes that choose a branch (their outgoing edges name one).
    branching: frozenset[str] = frozenset()

    def countdown(self) -> dict[str, int]:
        """For one run: per node, how many predecessors are yet to finish or be skipped
        before it may start (a copy: the run counts it down)."""
        return {node_id: len(preds) for node_id, preds in self.predecessors.items()}


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
    _index_nodes(definition)
    in_node = _the_in_node(definition)
    input_names = _check_inputs(definition, in_node)
    nodes = _completed_nodes(definition, in_node)
    predecessors, successors, incoming = _check_edges(definition, nodes, in_node)
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
    templates: dict[str, dict[str, jinja2.Template]] = {}
    expressions: dict[str, dict[str, jinja2.environment.TemplateExpression]] = {}
    for index, (node_id, node) in enumerate(nodes.items()):
        check = _NameCheck(index, node_id, input_names, nodes, ancestors[node_id])
        templates[node_id] = check.templates(node.template_sources())
        expressions[node_id] = check.expressions(node.expression_sources())
    return CompiledWorkflow(
        definition=definition,
        nodes=nodes,
        in_node=in_node,
        order=order,
        predecessors=predecessors,
        successors=successors,
        incoming=incoming,
        ancestors=ancestors,
        templates=templates,
        expressions=expressions,
        immediate=all(node.type in IMMEDIATE for node in nodes.values()),
        branching=frozenset(node_id for node_id, node in nodes.items() if node.branch_names()),
    )


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


def _completed_nodes(definition: WorkflowDefinition, in_node: InNode) -> dict[str, Node]:
    completed: dict[str, Node] = {}
    for index, node in enumerate(definition.nodes):
        try:
            completed[node.id] = node.completed(in_node)
        except InvalidArgument as exc:
            raise InvalidArgument(f"nodes[{index}].{exc.message}") from None
    return completed


def _check_edges(
    definition: WorkflowDefinition, nodes: Mapping[str, Node], in_node: InNode
) -> tuple[dict[str, frozenset[str]], dict[str, tuple[str, ...]], dict[str, tuple[Edge, ...]]]:
    predecessors: dict[str, set[str]] = {node_id: set() for node_id in nodes}
    successors: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    incoming: dict[str, list[Edge]] = {node_id: [] for node_id in nodes}
    seen: set[tuple[str, str, str | None]] = set()
    for index, edge in enumerate(definition.edges):
        for key, node_id in (("from", edge.source), ("to", edge.target)):
            if node_id not in nodes:
                raise InvalidArgument(f"edges[{index}].{key}: no node with id {node_id!r}")
        if edge.target == in_node.id:
            raise InvalidArgument(
                f"edges[{index}].to: the 'in' node {in_node.id!r} cannot have incoming edges"
            )
        _check_branch(index, edge, nodes[edge.source])
        if (edge.source, edge.target, edge.branch) in seen:
            raise InvalidArgument(f"edges[{index}]: duplicate edge {edge.source} -> {edge.target}")
        seen.add((edge.source, edge.target, edge.branch))
        predecessors[edge.target].add(edge.source)
        # Two branches of one node may lead to the same node: it is one successor.
        if edge.target not in successors[edge.source]:
            successors[edge.source].append(edge.target)
        incoming[edge.target].append(edge)
    return (
        {node_id: frozenset(preds) for node_id, preds in predecessors.items()},
        {node_id: tuple(succs) for node_id, succs in successors.items()},
        {node_id: tuple(edges) for node_id, edges in incoming.items()},
    )


def _check_branch(index: int, edge: Edge, source: Node) -> None:
    """An edge out of a branching node names one of its branches; no other edge names one."""
    branches = source.branch_names()
    if not branches:
        if edge.branch is not None:
            raise InvalidArgument(
                f"edges[{index}].branch: {edge.source!r} is a {source.type} node, which has no"
                " branches (only condition and intent nodes do)"
            )
        return
    known = ", ".join(branches)
    if edge.branch is None:
        raise InvalidArgument(
            f"edges[{index}]: the edge {edge.source} -> {edge.target} leaves {source.type} node"
            f" {edge.source!r}, so it must name its branch (one of: {known})"
        )
    if edge.branch not in branches:
        raise InvalidArgument(
            f"edges[{index}].branch: {source.type} node {edge.source!r} has no branch"
            f" {edge.branch!r} (branches: {known})"
        )


def _topological_order(predecessors: Mapping[str, frozenset[str]]) -> tuple[str, ...]:
    try:
        return tuple(graphlib.TopologicalSorter(predecessors).static_order())
    except graphlib.CycleError as exc:
        # args[1] lists the cycle with its first node repeated at the end, in edge order.
        cycle: list[str] = exc.args[1]
        raise InvalidArgument(f"workflow has a cycle: {' -> '.join(cycle)}") from None


class _NameCheck:
    """Compiles one node's templates and expressions, and checks every name they read: a
    name no input or upstream node provides would render as nothing at run time, and
    catching it here is kinder than a blank in a prompt."""

    def __init__(
        self,
        index: int,
        node_id: str,
        input_names: set[str],
        nodes: Mapping[str, Node],
        ancestors: frozenset[str],
    ) -> None:
        self.index = index
        self.node_id = node_id
        self.nodes = nodes
        self.visible = (
            input_names | ancestors | {templating.NODES_KEY} | set(templating.environment().globals)
        )

    def templates(self, sources: Mapping[str, str]) -> dict[str, jinja2.Template]:
        compiled: dict[str, jinja2.Template] = {}
        for field, source in sources.items():
            path = f"nodes[{self.index}].{field}"
            try:
                compiled[field] = templating.compile_template(source)
            except InvalidArgument as exc:
                raise InvalidArgument(f"{path}: {exc.message}") from None
            self._check_names(path, templating.referenced_names(source))
        return compiled

    def expressions(
        self, sources: Mapping[str, str]
    ) -> dict[str, jinja2.environment.TemplateExpression]:
        compiled: dict[str, jinja2.environment.TemplateExpression] = {}
        for field, source in sources.items():
            path = f"nodes[{self.index}].{field}"
            try:
                compiled[field] = templating.compile_expression(source)
            except InvalidArgument as exc:
                raise InvalidArgument(f"{path}: {exc.message}") from None
            self._check_names(path, templating.expression_names(source))
        return compiled

    def _check_names(self, path: str, names: Set[str]) -> None:
        for name in sorted(names - self.visible):
            if name in self.nodes:
                raise InvalidArgument(
                    f"{path}: node {name!r} does not run before {self.node_id!r}"
                    f" (add an edge from {name!r})"
                )
            raise InvalidArgument(f"{path}: {name!r} is not an input or an upstream node")


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
    if kind == "value_error":
        return f"{path}: {ctx.get('error')}"
    if kind == "missing":
        return f"{path}: required"
    if kind == "extra_forbidden":
        return f"{path}: unknown field"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return f"{path}: must not be empty"
    if kind == "greater_than_equal":
        return f"{path}: must be at least {ctx.get('ge')}, got {_short(error['input'])}"
    if kind == "greater_than":
        bound = ctx.get("gt")
        shown = f"{bound:g}" if isinstance(bound, int | float) else bound
        return f"{path}: must be greater than {shown}, got {_short(error['input'])}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return f"{path}: must not be empty"
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
