"""What a published version of a workflow takes and gives, as JSON Schema, and the OpenAPI
document of its FlowAI and LinkAI calls: derived from the definition, so they say exactly what
input validation (engine/inputs.py) accepts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flowport.engine import CompiledWorkflow, InputSpec

JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"
# A number sent as a string ("1.8", LinkAI's own example): what engine/inputs.py reads as a
# number, in ASCII and bounded so that every string matching it is a finite double.
NUMBER_TEXT = r"^[+-]?([0-9]{1,15}(\.[0-9]{0,15})?|\.[0-9]{1,15})([eE][+-]?[0-9]{1,2})?$"
# JSON numbers beyond a double are refused before validation (jsonbody.MAX_NUMBER).
MAX_DOUBLE = 1.7976931348623157e308
URL = r"^https?://[^\s/?#]+([/?#]\S*)?$"
# The error kinds each surface may answer before a run begins, by status.
FLOWAI_ERRORS = {
    "400": "The body or an input is invalid; the message names the field.",
    "401": "The key is missing, unknown, revoked or expired.",
    "402": "The account's run credits are used up.",
    "403": "The key may not run this workflow (no `run` scope, or limited to other workflows).",
    "404": "No such published version or alias.",
    "409": "An input is blocked by the content policy.",
    "422": "An Idempotency-Key was used with another body.",
    "429": "Rate limited; `Retry-After` says when to try again.",
}
LINKAI_CODES = {
    "400": "malformed request or invalid args",
    "401": "missing, unknown or revoked key",
    "402": "no such app, version or alias",
    "403": "the key may not run this app",
    "406": "the account's run credits are used up",
    "408": "the key has no API access (lacks the run scope)",
    "409": "input or output blocked by the content policy",
    "429": "rate limited",
    "503": "the service failed",
}


def input_schema(specs: Sequence[InputSpec]) -> dict[str, Any]:
    """The `in` node's inputs as one JSON object: what FlowAI's `input` and LinkAI's `args`
    take. A value of null counts as absent."""
    return {
        "$schema": JSON_SCHEMA,
        "type": "object",
        "additionalProperties": False,
        "properties": {spec.name: _input(spec) for spec in specs},
        "required": [spec.name for spec in specs if spec.required],
    }


def _input(spec: InputSpec) -> dict[str, Any]:
    text: dict[str, Any] = {"type": "string"}
    if spec.max_length is not None:
        text["maxLength"] = spec.max_length
    match spec.type:
        case "text":
            kinds = [text]
        case "number":
            number = {"type": "number", "minimum": -MAX_DOUBLE, "maximum": MAX_DOUBLE}
            kinds = [number, {"type": "string", "pattern": NUMBER_TEXT}]
        case "boolean":
            kinds = [{"type": "boolean"}, {"type": "string", "enum": ["true", "false"]}]
        case "image" | "file":
            kinds = [{**text, "format": "uri", "pattern": URL}]
        case "object":
            kinds = [{"type": "object"}]
    if not spec.required:
        kinds.append({"type": "null"})
    schema: dict[str, Any] = kinds[0] if len(kinds) == 1 else {"anyOf": kinds}
    schema["x-flowport-type"] = spec.type
    if spec.description:
        schema["description"] = spec.description
    if spec.default is not None:
        schema["default"] = spec.default
    return schema


def output_schema(workflow: CompiledWorkflow) -> dict[str, Any]:
    """A run's output: the text its `out` node renders."""
    out = next((node for node in workflow.nodes.values() if node.type == "out"), None)
    schema: dict[str, Any] = {"$schema": JSON_SCHEMA, "type": "string"}
    if out is not None:
        schema["description"] = f"The text of the out node {out.name!r} ({out.id})."
    return schema


def openapi_document(
    *,
    workflow_id: str,
    version: int,
    workflow: CompiledWorkflow,
    aliases: Sequence[str],
    newest: bool,
) -> dict[str, Any]:
    """An OpenAPI 3.1 document of the workflow's two run routes for one version: its bodies
    name that version (or one of its `aliases`) in `version`, so that they take its inputs;
    the `newest` version may also be run without naming it."""
    definition = workflow.definition
    inputs = input_schema(workflow.in_node.inputs)
    del inputs["$schema"]
    output = output_schema(workflow)
    del output["$schema"]
    version_field: dict[str, Any] = {
        "description": f"Version {version}, by its number or an alias pointing at it"
        + (" (or none: it is the newest)." if newest else "."),
        "enum": [version, *aliases, *([None] if newest else [])],
    }
    # An older version runs only when named.
    pinned = [] if newest else ["version"]
    # Absent and null are one to the service (clients send null for fields they leave empty).
    body_input: dict[str, Any] = {"$ref": "#/components/schemas/Input"}
    if not inputs["required"]:
        body_input = {"anyOf": [body_input, {"type": "null"}]}
    session = {"type": ["string", "null"], "maxLength": 128}
    flowai_body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "input": body_input,
            "stream": {"type": "boolean", "description": "`true` answers with SSE."},
            "session_id": session,
            "mode": {"enum": ["blocking", "stream", "async", None]},
            "version": version_field,
        },
        "required": (["input"] if inputs["required"] else []) + pinned,
        # `"stream": true` goes with no mode or with mode `stream` only.
        "if": {"properties": {"stream": {"const": True}}, "required": ["stream"]},
        "then": {"properties": {"mode": {"const": "stream"}}},
    }
    linkai_body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "app_code": {"const": workflow_id},
            "args": body_input,
            "session_id": session,
            "mode": {"enum": ["blocking", "async", None]},
            "version": version_field,
        },
        "required": (["app_code", "args"] if inputs["required"] else ["app_code"]) + pinned,
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": definition.name,
            "version": str(version),
            "description": definition.description
            or f"Workflow {workflow_id}, version {version}, as an API.",
        },
        # Relative: the document is served by the service it describes.
        "servers": [{"url": "/"}],
        "security": [{"ApiKey": []}, {"Bearer": []}],
        "paths": {
            f"/v1/api/workflow/run/{workflow_id}": {
                "post": {
                    "operationId": "runFlowAi",
                    "summary": f"Run {definition.name}, FlowAI style",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": flowai_body}},
                    },
                    "responses": _flowai_responses(),
                }
            },
            "/v1/workflow/run": {
                "post": {
                    "operationId": "runLinkAi",
                    "summary": f"Run {definition.name}, LinkAI style",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": linkai_body}},
                    },
                    "responses": _linkai_responses(),
                }
            },
        },
        "components": {
            "schemas": {
                "Input": inputs,
                "Output": output,
                "FlowAiOutput": {
                    "type": "object",
                    "required": ["output", "total_time", "run_id"],
                    "properties": {
                        "output": {"$ref": "#/components/schemas/Output"},
                        "total_time": {"type": "number", "minimum": 0},
                        "run_id": {"type": "string"},
                        "usage": {"type": "object"},
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["run_id", "status", "events_url"],
                    "properties": {
                        "run_id": {"type": "string"},
                        "status": {"const": "queued"},
                        "events_url": {"type": "string"},
                    },
                },
                "Error": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
                },
                "SseFrame": {
                    "type": "string",
                    "description": (
                        "`event: msg|stream|output|error` then `data: <JSON>`: msg frames "
                        '`{"Node", "Msg", "Type": "start|start_node|finish_node", "Data"}`, '
                        'stream frames `{"Content", "Node", "Reasoning"}`, the last frame '
                        "`output` (as the blocking answer) or `error` "
                        '(`{"Node", "code", "message"}`).'
                    ),
                },
                "LinkAiAnswer": {
                    "type": "object",
                    "required": ["success", "code", "message", "data"],
                    "properties": {
                        "success": {"type": "boolean"},
                        "code": {"type": "integer"},
                        "message": {"type": "string"},
                        "data": {
                            "type": ["object", "null"],
                            "properties": {
                                "output_text": {"$ref": "#/components/schemas/Output"},
                                "session_id": {"type": "string"},
                                "run_id": {"type": "string"},
                            },
                        },
                    },
                },
            },
            "headers": {
                "WorkflowVersion": {
                    "description": "The published version that ran.",
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-KEY"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def _flowai_responses() -> dict[str, Any]:
    ran = {"x-workflow-version": {"$ref": "#/components/headers/WorkflowVersion"}}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    responses: dict[str, Any] = {
        "200": {
            "description": "The output (blocking), or the run's events (`stream`).",
            "headers": ran,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/FlowAiOutput"}},
                "text/event-stream": {"schema": {"$ref": "#/components/schemas/SseFrame"}},
            },
        },
        "202": {
            "description": "A background run (`mode: async`), accepted.",
            "headers": ran,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
        },
    }
    for status, why in FLOWAI_ERRORS.items():
        responses[status] = {"description": why, "content": error}
    responses["5XX"] = {"description": "The run failed, or the service did.", "content": error}
    return responses


def _linkai_responses() -> dict[str, Any]:
    answer = {"application/json": {"schema": {"$ref": "#/components/schemas/LinkAiAnswer"}}}
    responses: dict[str, Any] = {
        "200": {"description": "Success: `data.output_text` is the output.", "content": answer},
        "202": {"description": "A background run (`mode: async`), accepted.", "content": answer},
    }
    for status, why in LINKAI_CODES.items():
        responses[status] = {"description": f"`code` {status}: {why}.", "content": answer}
    return responses
