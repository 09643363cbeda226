"""A request grpc cannot decode is an INVALID_ARGUMENT naming the problem, on a real grpc.aio
server whose services were registered through LenientHandlers (no interceptor)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from flowport.server.decoding import UNDECODABLE, LenientHandlers
from flowport.v1 import runs_pb2, runs_pb2_grpc

# GetRunRequest{run_id: <bytes that are not UTF-8>}: field 1, length-delimited, 2 bytes.
NOT_UTF8 = b"\x0a\x02\xff\xfe"
GET_RUN = "/flowport.v1.Runs/GetRun"


class EchoRuns(runs_pb2_grpc.RunsServicer):
    async def GetRun(
        self, request: runs_pb2.GetRunRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.Run:
        return runs_pb2.Run(id=request.run_id)


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server()
    handlers = LenientHandlers()
    runs_pb2_grpc.add_RunsServicer_to_server(EchoRuns(), handlers)
    handlers.install(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(None)


def _raw_call(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
    # Bytes in, bytes out: the client must not be the one refusing the request.
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


async def test_a_decodable_request_reaches_the_servicer(channel: grpc.aio.Channel) -> None:
    request = runs_pb2.GetRunRequest(run_id="run_1").SerializeToString()
    answer = await _raw_call(channel, GET_RUN)(request)
    assert runs_pb2.Run.FromString(answer).id == "run_1"


async def test_an_undecodable_request_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await _raw_call(channel, GET_RUN)(NOT_UTF8)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.value.details() == UNDECODABLE
    # The server keeps serving.
    answer = await _raw_call(channel, GET_RUN)(
        runs_pb2.GetRunRequest(run_id="r").SerializeToString()
    )
    assert runs_pb2.Run.FromString(answer).id == "r"


async def test_an_unknown_method_is_unimplemented(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await _raw_call(channel, "/flowport.v1.Runs/NoSuchMethod")(b"")
    assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_service_registered_without_method_names_is_refused() -> None:
    handlers = LenientHandlers()
    # What generated code older than grpcio-tools 1.62 does: the generic handler alone.
    handlers.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("x.Y", {}),))
    with pytest.raises(RuntimeError, match="without its method handlers"):
        handlers.install(grpc.aio.server())
