"""Jinja2 templates of a workflow: compiled in a sandbox when saved, rendered per node in a run."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Set
from typing import Any

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flowport.errors import FlowportError, InvalidArgument

# Where the outputs of finished nodes live in a template context; a node id or an input
# with this name would hide it, so definitions may not use it.
NODES_KEY = "nodes"


def _finalize(value: Any) -> Any:
    # `{{ start.output }}` of an object input should read as JSON in a prompt, not as a
    # Python repr; a missing value (None) renders as nothing rather than "None".
    if value is None:
        return ""
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


@functools.cache
def environment() -> ImmutableSandboxedEnvironment:
    """The one sandbox every template is compiled in; built on first use, not at import."""
    # Immutable: a template may not call list.append or dict.update on the run's data.
    # Autoescape off: templates produce prompts and plain text, not HTML.
    return ImmutableSandboxedEnvironment(
        autoescape=False, undefined=jinja2.Undefined, finalize=_finalize
    )


def compile_template(source: str) -> jinja2.Template:
    """Compiles `source`; a syntax error raises InvalidArgument with its line number."""
    try:
        template = environment().from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidArgument(f"syntax error at line {exc.lineno}: {exc.message}") from None
    # Every render copies the template's globals into its context. Jinja keeps them as a
    # ChainMap over the environment's, which Python code iterates key by key: a plain dict
    # of the same names (the environment's globals never change) renders in less than half
    # the time.
    template.globals = dict(template.globals)
    return template


def compile_expression(source: str) -> jinja2.environment.TemplateExpression:
    """Compiles a condition such as `age >= 18 and calc.output != ""` in the same sandbox
    (never Python's eval); a syntax error raises InvalidArgument."""
    try:
        return environment().compile_expression(source)
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidArgument(f"syntax error: {exc.message}") from None


def referenced_names(source: str) -> Set[str]:
    """The variables a template reads from its context (not the ones it sets itself)."""
    ast = environment().parse(source)
    return jinja2.meta.find_undeclared_variables(ast)


def expression_names(source: str) -> Set[str]:
    """The variables an expression reads; `source` must already have compiled, so it is one
    expression and wrapping it in a print statement cannot change what it means."""
    return referenced_names("{{ (" + source + ") }}")


def build_context(
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any]],
    skipped: Iterable[str] = (),
) -> dict[str, Any]:
    """The variables a template sees: every input by name, and every finished node's fields
    as `nodes[id]` and, where the id is an identifier, as `id` itself.

    A `skipped` node (on a branch not taken) is undefined, and so is every field read from
    it: `{{ a.output }}` renders nothing and `a is defined` is false, so that a join can
    read all of its branches."""
    context: dict[str, Any] = dict(inputs)
    nodes: dict[str, Any] = dict(outputs)
    for node_id in skipped:
        nodes[node_id] = jinja2.ChainableUndefined(name=node_id)
    for node_id, fields in nodes.items():
        if node_id.isidentifier():
            context[node_id] = fields
    context[NODES_KEY] = nodes
    return context


def render(template: jinja2.Template, context: Mapping[str, Any], *, node_id: str) -> str:
    """Renders one template of node `node_id`; a failure names the node and what went wrong."""
    try:
        return template.render(context)
    except Exception as exc:
        raise FlowportError(f"node {node_id}: {_problem(exc)}", node_id=node_id) from None


def evaluate(
    expression: jinja2.environment.TemplateExpression,
    context: Mapping[str, Any],
    *,
    node_id: str,
    where: str,
) -> Any:
    """Evaluates one expression of node `node_id`; a failure names the node and the field."""
    try:
        return expression(**context)
    except Exception as exc:
        raise FlowportError(f"node {node_id}: {where}: {_problem(exc)}", node_id=node_id) from None


def as_text(value: Any) -> str:
    """A value as a template would print it: JSON for objects and lists, "" for None."""
    return str(_finalize(value))


def _problem(exc: Exception) -> str:
    if isinstance(exc, jinja2.TemplateError):
        # UndefinedError, SecurityError (the sandbox refused an attribute): their own
        # message is what a workflow author needs, e.g. "'calc' is undefined".
        return exc.message or type(exc).__name__
    # Arithmetic and type errors raised by the data: 1 / 0, "a" - 1, ...
    return f"{type(exc).__name__}: {exc}"
