"""Jinja2 templates of a workflow: compiled in a sandbox when saved, rendered per node in a run."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Set
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
        return environment().from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidArgument(f"syntax error at line {exc.lineno}: {exc.message}") from None


def referenced_names(source: str) -> Set[str]:
    """The variables a template reads from its context (not the ones it sets itself)."""
    ast = environment().parse(source)
    return jinja2.meta.find_undeclared_variables(ast)


def build_context(
    inputs: Mapping[str, Any], outputs: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The variables a template sees: every input by name, and every finished node's fields
    as `nodes[id]` and, where the id is an identifier, as `id` itself."""
    context: dict[str, Any] = dict(inputs)
    for node_id, fields in outputs.items():
        if node_id.isidentifier():
            context[node_id] = fields
    context[NODES_KEY] = dict(outputs)
    return context


def render(template: jinja2.Template, context: Mapping[str, Any], *, node_id: str) -> str:
    """Renders one template of node `node_id`; a failure names the node and what went wrong."""
    try:
        return template.render(context)
    except jinja2.TemplateError as exc:
        # UndefinedError, SecurityError (the sandbox refused an attribute): their own
        # message is what a workflow author needs, e.g. "'calc' is undefined".
        what = exc.message or type(exc).__name__
    except Exception as exc:
        # Arithmetic and type errors raised by the data: 1 / 0, "a" - 1, ...
        what = f"{type(exc).__name__}: {exc}"
    raise FlowportError(f"node {node_id}: {what}", node_id=node_id)
