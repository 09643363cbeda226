"""Runs: the record of one run and its nodes."""

from __future__ import annotations

import grpc

from flowport.server.context import Services
from flowport.server.convert import struct, timestamp
from flowport.server.status import translate_errors
from flowport.storage import get_run
from flowport.v1 import runs_pb2, runs_pb2_grpc


class RunsServicer(runs_pb2_grpc.RunsServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    @translate_errors
    async def GetRun(
        self, request: runs_pb2.GetRunRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.Run:
        caller = await self._services.caller(context)
        return await self._load(caller.account_id, request.run_id)

    @translate_errors
    async def CancelRun(
        self, request: runs_pb2.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.Run:
        caller = await self._services.caller(context)
        run = await self._load(caller.account_id, request.run_id)
        if run.status != "running":
            return run
        await self._services.runs.cancel(run.id)
        return await self._load(caller.account_id, request.run_id)

    async def _load(self, account_id: str, run_id: str) -> runs_pb2.Run:
        run, nodes = await self._services.db.run(
            lambda session: get_run(session, account_id=account_id, run_id=run_id)
        )
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
        )


def _jsonable(output: object) -> dict | None:
    """Node outputs are stored as JSON objects; anything else is wrapped to fit a Struct."""
    if output is None or isinstance(output, dict):
        return output
    return {"output": output}
