"""The ceiling: a grpc.aio server whose handlers do nothing but answer a constant, run as
`python -m tests.bench.ceiling --port N` behind Flowport's own Envoy config."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator

import grpc
from google.api import httpbody_pb2

from flowport.v1 import flowai_pb2, flowai_pb2_grpc, runner_pb2, runner_pb2_grpc

# The size and shape of the BMI workflow's blocking answer, so the bytes on the wire match.
ANSWER = httpbody_pb2.HttpBody(
    content_type="application/json",
    data='{"output":"您的BMI值是23.15","total_time":0.000100000,"run_id":"run_00000000000000000000"}'.encode(),
)
RUN_RESPONSE = runner_pb2.RunResponse(
    output="您的BMI值是23.15",
    total_time=0.0001,
    run_id="run_00000000000000000000",
    session_id="sess_00000000000000000000",
)


class EmptyFlowAi(flowai_pb2_grpc.FlowAiServicer):
    async def RunWorkflow(
        self, request: flowai_pb2.RunWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        yield ANSWER


class EmptyRunner(runner_pb2_grpc.WorkflowRunnerServicer):
    async def Run(
        self, request: runner_pb2.RunRequest, context: grpc.aio.ServicerContext
    ) -> runner_pb2.RunResponse:
        return RUN_RESPONSE


async def create_server(host: str, port: int) -> grpc.aio.Server:
    # The same server option as Flowport's: one process owns the port.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    flowai_pb2_grpc.add_FlowAiServicer_to_server(EmptyFlowAi(), server)
    runner_pb2_grpc.add_WorkflowRunnerServicer_to_server(EmptyRunner(), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server


async def serve(host: str, port: int) -> None:
    server = await create_server(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
