"""The REST routes, read from the google.api.http annotations of the descriptor set Envoy
transcodes with: each route's path template, and the query parameters it takes.

A route's query parameters are the request fields its annotation leaves to the query: not
bound by the path, and not in the body (none when the body is `*`). Envoy refuses every
other query parameter (envoy/flowport.lua), so that a path means what it says: without
that, the transcoder would let `?workflow_id=` override the path's workflow."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

# Message fields below this depth are not offered as `a.b.c` query parameters.
MAX_QUERY_DEPTH = 3
_VARIABLE = re.compile(r"\{([\w.]+)(?:=([^}]*))?\}")


@dataclass(frozen=True, slots=True)
class Route:
    verb: str  # GET, POST, ...
    template: str  # /v1/runs/{run_id}/events
    rpc: str  # flowport.v1.Runs/StreamRunEvents
    path_fields: tuple[str, ...]
    query_parameters: tuple[str, ...]

    def lua_pattern(self) -> str:
        """The template as an anchored Lua pattern over the path (before any `?`)."""
        parts: list[str] = []
        last = 0
        for match in _VARIABLE.finditer(self.template):
            parts.append(_lua_literal(self.template[last : match.start()]))
            # `{x}` and `{x=*}` are one segment; `{x=**}` or a longer pattern, any rest.
            parts.append("[^/]+" if match.group(2) in (None, "*") else ".+")
            last = match.end()
        parts.append(_lua_literal(self.template[last:]))
        return "^" + "".join(parts) + "$"


def rest_routes(descriptor_set: bytes, services: tuple[str, ...]) -> list[Route]:
    """Every binding of the `services` (full names) in the serialized FileDescriptorSet."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file
    messages = {
        f".{file.package}.{name}": message
        for file in files
        for name, message in _messages(file.message_type)
    }
    routes = []
    for file in files:
        for service in file.service:
            full_name = f"{file.package}.{service.name}"
            if full_name not in services:
                continue
            for method in service.method:
                if not method.options.HasExtension(annotations_pb2.http):
                    continue
                rule = method.options.Extensions[annotations_pb2.http]
                for binding in (rule, *rule.additional_bindings):
                    routes.append(
                        _route(binding, f"{full_name}/{method.name}", messages, method.input_type)
                    )
    return routes


def _route(
    binding: object,
    rpc: str,
    messages: dict[str, descriptor_pb2.DescriptorProto],
    input_type: str,
) -> Route:
    verb = binding.WhichOneof("pattern")  # type: ignore[attr-defined]
    if verb == "custom":
        verb, template = binding.custom.kind, binding.custom.path  # type: ignore[attr-defined]
    else:
        template = getattr(binding, verb)
    body: str = binding.body  # type: ignore[attr-defined]
    path_fields = tuple(match.group(1) for match in _VARIABLE.finditer(template))
    query: tuple[str, ...] = ()
    if body != "*":
        taken = {*path_fields, body} - {""}
        query = tuple(_leaves(messages, messages[input_type], "", taken, MAX_QUERY_DEPTH))
    return Route(verb.upper(), template, rpc, path_fields, query)


def _messages(
    types: Iterable[descriptor_pb2.DescriptorProto], prefix: str = ""
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto]]:
    for message in types:
        name = f"{prefix}{message.name}"
        yield name, message
        yield from _messages(message.nested_type, f"{name}.")


def _leaves(
    messages: dict[str, descriptor_pb2.DescriptorProto],
    message: descriptor_pb2.DescriptorProto,
    prefix: str,
    taken: set[str],
    depth: int,
) -> Iterator[str]:
    """The names (proto and JSON spelling) of the fields a query may set: scalars, enums and
    repeated ones, and the fields of message fields, dotted."""
    repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    for field in message.field:
        if field.type == descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE and (
            field.label == repeated
        ):
            continue  # a map or a list of messages: not settable from a query
        if f"{prefix}{field.name}" in taken:
            continue  # bound by the path or the body, in either spelling
        for name in dict.fromkeys((f"{prefix}{field.name}", f"{prefix}{field.json_name}")):
            if field.type != descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE:
                yield name
            elif depth > 1 and field.type_name in messages:
                inner = messages[field.type_name]
                yield from _leaves(messages, inner, f"{name}.", taken, depth - 1)


def lua_table(routes: list[Route]) -> str:
    """The routes as the Lua chunk envoy/flowport.lua starts with (`ROUTES`)."""
    lines = [
        "-- Generated by flowport.envoy from the google.api.http annotations: each REST",
        "-- route and the query parameters it takes (flowport.routes).",
        "local ROUTES = {",
    ]
    for route in routes:
        query = ", ".join(f"[{_lua_string(name)}] = true" for name in route.query_parameters)
        lines.append(
            f"  {{method = {_lua_string(route.verb)}, pattern = {_lua_string(route.lua_pattern())},"
            f" template = {_lua_string(route.template)}, query = {{{query}}}}},"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _lua_literal(text: str) -> str:
    return re.sub(r"([\^$()%.\[\]*+\-?])", r"%\1", text)


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
