"""Errors as rich gRPC statuses, on a real grpc.aio server: the table's code, details a client
reads back with grpcio-status, and what a transcoded (REST) call gets instead."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from flowport import errors
from flowport.server.status import INTERNAL_MESSAGE, translate_errors
from flowport.v1 import runs_pb2, runs_pb2_grpc

# What the Lua filter adds to every call Envoy transcoded from REST.
REST = (("x-flowport-surface", "rest"),)


class Failing(runs_pb2_grpc.RunsServicer):
    """GetRun raises the error `run_id` names."""

    @translate_errors
    async def GetRun(
        self, request: runs_pb2.GetRunRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.Run:
        match request.run_id:
            case "bad-input":
                raise errors.InvalidArgument.at("input.weight", "required")
            case "rate-limited":
                raise errors.RateLimited("rate limited", retry_after_s=3)
            case "node-failed":
                raise errors.FlowportError("node calc: division by zero", node_id="calc")
        raise RuntimeError("secret internals")


@pytest.fixture
async def runs() -> AsyncIterator[runs_pb2_grpc.RunsStub]:
    server = grpc.aio.server()
    runs_pb2_grpc.add_RunsServicer_to_server(Failing(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield runs_pb2_grpc.RunsStub(channel)
    await server.stop(None)


async def _failure(
    runs: runs_pb2_grpc.RunsStub, run_id: str, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await runs.GetRun(runs_pb2.GetRunRequest(run_id=run_id), metadata=metadata)
    return failure.value


def _details(status: status_pb2.Status) -> dict[str, Any]:
    """The status' details by type name, unpacked."""
    unpacked: dict[str, Any] = {}
    for packed in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
        ):
            if packed.Is(kind.DESCRIPTOR):
                detail = kind()
                packed.Unpack(detail)
                unpacked[kind.DESCRIPTOR.name] = detail
    return unpacked


async def test_a_bad_argument_names_its_field(runs: runs_pb2_grpc.RunsStub) -> None:
    failure = await _failure(runs, "bad-input")
    status = rpc_status.from_call(failure)

    assert failure.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.details() == "input.weight: required"
    details = _details(status)
    assert details["ErrorInfo"] == error_details_pb2.ErrorInfo(
        reason="INVALID_ARGUMENT", domain="flowport"
    )
    violation = details["BadRequest"].field_violations[0]
    assert (violation.field, violation.description) == ("input.weight", "required")


async def test_rate_limited_says_when_to_retry(runs: runs_pb2_grpc.RunsStub) -> None:
    failure = await _failure(runs, "rate-limited")

    assert failure.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(failure.trailing_metadata())["retry-after"] == "3"
    retry = _details(rpc_status.from_call(failure))["RetryInfo"]
    assert retry.retry_delay.seconds == 3


async def test_a_failed_node_is_named(runs: runs_pb2_grpc.RunsStub) -> None:
    failure = await _failure(runs, "node-failed")

    assert failure.code() == grpc.StatusCode.INTERNAL
    info = _details(rpc_status.from_call(failure))["ErrorInfo"]
    assert info.reason == "INTERNAL"
    assert dict(info.metadata) == {"node_id": "calc"}


async def test_an_unexpected_exception_hides_its_internals(
    runs: runs_pb2_grpc.RunsStub, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        failure = await _failure(runs, "boom")

    assert failure.code() == grpc.StatusCode.INTERNAL
    assert failure.details() == INTERNAL_MESSAGE
    assert "secret" not in str(failure.trailing_metadata())
    # The traceback is in the log, and only there.
    assert any("secret internals" in (record.exc_text or "") for record in caplog.records)


async def test_a_transcoded_call_gets_the_rest_status_for_envoy_to_print(
    runs: runs_pb2_grpc.RunsStub,
) -> None:
    failure = await _failure(runs, "bad-input", REST)
    trailers = dict(failure.trailing_metadata())

    # The gRPC code stays the table's; the body Envoy prints and its HTTP status are REST's.
    assert failure.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailers["x-http-status"] == "400"
    body = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert (body.code, body.message) == (400, "input.weight: required")
    assert set(_details(body)) == {"ErrorInfo", "BadRequest"}
