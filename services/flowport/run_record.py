"""A run's record as the API shows it: the `Run` message of GET /v1/runs/{id}, its JSON as
Envoy prints it (what a webhook carries), and its outcome as the engine would have told it
(what a repeated call is answered from)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format

from flowport import statuses
from flowport.convert import struct, timestamp
from flowport.engine import RunFailed, RunSucceeded
from flowport.engine.llm import TokenUsage, add_usage
from flowport.storage import NodeRun, Run, WebhookDelivery
from flowport.v1 import runs_pb2


def run_message(
    run: Run, nodes: Sequence[NodeRun], deliveries: Sequence[WebhookDelivery] = ()
) -> runs_pb2.Run:
    return runs_pb2.Run(
        id=run.id,
        workflow_id=run.workflow_id,
        version=run.version,
        status=run.status,
        inputs=struct(run.inputs),
        output=run.output,
        error=run.error,
        error_node=run.error_node,
        total_time=run.total_time,
        session_id=run.session_id or "",
        started_at=timestamp(run.started_at),
        finished_at=timestamp(run.finished_at),
        nodes=[
            runs_pb2.NodeRun(
                node_id=node.node_id,
                name=node.name,
                type=node.node_type,
                status=node.status,
                time_spend=node.time_spend,
                started_at=timestamp(node.started_at),
                output=struct(_jsonable(node.output)),
                error=node.error,
            )
            for node in nodes
        ],
        webhook_deliveries=[
            runs_pb2.WebhookDelivery(
                attempt=delivery.attempt,
                status_code=delivery.status_code,
                error=delivery.error,
                at=timestamp(delivery.at),
            )
            for delivery in deliveries
        ],
    )


def run_record_json(
    run: Run, nodes: Sequence[NodeRun], deliveries: Sequence[WebhookDelivery] = ()
) -> dict[str, Any]:
    """The record as GET /v1/runs/{id} answers it through Envoy: field names as in the
    proto, every field printed, whole numbers without a fraction (protobuf's JSON printer
    in Envoy writes 75 where Python's writes 75.0)."""
    return _whole_numbers(
        json_format.MessageToDict(
            run_message(run, nodes, deliveries),
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
    )


def _whole_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


def _jsonable(output: object) -> dict[str, Any] | None:
    """Node outputs are stored as JSON objects; anything else is wrapped to fit a Struct."""
    if output is None or isinstance(output, dict):
        return output
    return {"output": output}


def outcome(run: Run, nodes: Sequence[NodeRun]) -> RunSucceeded | RunFailed:
    """An ended run's outcome from its record: its output and the tokens its llm nodes
    used, or the error it failed with."""
    if run.status == "succeeded":
        return RunSucceeded(run.id, run.output or "", run.total_time or 0.0, usage(nodes))
    error = statuses.recorded_failure(run.error_code, run.error or run.status, run.error_node)
    return RunFailed(run.id, run.error_node, error, run.total_time or 0.0)


def usage(nodes: Sequence[NodeRun]) -> TokenUsage | None:
    """The tokens the run's llm nodes used, summed; None when none called a model."""
    total: TokenUsage | None = None
    for node in nodes:
        if isinstance(node.output, dict) and isinstance(node.output.get("usage"), dict):
            total = add_usage(total, node.output["usage"])
    return total
