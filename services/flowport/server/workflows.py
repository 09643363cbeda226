"""Workflows: drafts validated when saved, and publishing as immutable versions."""

from __future__ import annotations

from typing import Any

import grpc
from google.api import httpbody_pb2
from google.protobuf import struct_pb2
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport import schemas, snippets
from flowport.auth import Principal
from flowport.catalog import Published
from flowport.convert import from_struct, struct, timestamp
from flowport.engine import parse_definition
from flowport.errors import InvalidArgument
from flowport.jsonbody import dumps
from flowport.server.context import Services
from flowport.server.status import translate_errors
from flowport.storage import (
    Workflow,
    create_workflow,
    get_workflow,
    list_aliases,
    list_workflows,
    publish_workflow,
    set_alias,
    update_workflow_draft,
)
from flowport.v1 import workflows_pb2, workflows_pb2_grpc


class WorkflowsServicer(workflows_pb2_grpc.WorkflowsServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    @translate_errors
    async def CreateWorkflow(
        self, request: workflows_pb2.CreateWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflows_pb2.Workflow:
        caller = await self._services.admin(context)
        return await self._save(caller, request.definition, workflow_id=None)

    @translate_errors
    async def UpdateWorkflow(
        self, request: workflows_pb2.UpdateWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflows_pb2.Workflow:
        caller = await self._services.admin(context)
        return await self._save(caller, request.definition, workflow_id=request.id)

    @translate_errors
    async def PublishWorkflow(
        self, request: workflows_pb2.PublishWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflows_pb2.PublishWorkflowResponse:
        caller = await self._services.admin(context)
        version = await self._services.db.run(
            lambda session: publish_workflow(
                session, account_id=caller.account_id, workflow_id=request.id, actor=caller.key_id
            )
        )
        # The next run on any replica uses the new version.
        await self._services.forget_workflow(request.id)
        return workflows_pb2.PublishWorkflowResponse(id=request.id, version=version.version)

    @translate_errors
    async def GetWorkflowSchema(
        self, request: workflows_pb2.GetWorkflowSchemaRequest, context: grpc.aio.ServicerContext
    ) -> workflows_pb2.WorkflowSchema:
        published = await self._described(context, request.id, request.version)
        return workflows_pb2.WorkflowSchema(
            version=published.version,
            input=struct(schemas.input_schema(published.compiled.in_node.inputs)),
            output=struct(schemas.output_schema(published.compiled)),
        )

    @translate_errors
    async def GetWorkflowOpenApi(
        self, request: workflows_pb2.GetWorkflowOpenApiRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        published = await self._described(context, request.id, request.version)
        aliases = await self._services.db.run(
            lambda session: list_aliases(session, workflow_id=request.id)
        )
        newest = await self._services.catalog.newest(request.id)
        document = schemas.openapi_document(
            workflow_id=request.id,
            version=published.version,
            workflow=published.compiled,
            aliases=[alias.name for alias in aliases if alias.version == published.version],
            newest=published.version == newest.version,
        )
        return httpbody_pb2.HttpBody(content_type="application/json", data=dumps(document))

    @translate_errors
    async def GetWorkflowSnippets(
        self, request: workflows_pb2.GetWorkflowSnippetsRequest, context: grpc.aio.ServicerContext
    ) -> workflows_pb2.WorkflowSnippets:
        published = await self._described(context, request.id, 0)
        written = snippets.snippets(
            request.id, published.compiled.in_node.inputs, self._services.settings
        )
        return workflows_pb2.WorkflowSnippets(
            snippets=[workflows_pb2.Snippet(lang=s.lang, code=s.code) for s in written]
        )

    async def _described(
        self, context: grpc.aio.ServicerContext, workflow_id: str, version: int
    ) -> Published:
        """The version a caller asks to read about: any key that may run it may."""
        if version < 0:
            raise InvalidArgument.at("version", "a version number is 1 or more")
        caller = await self._services.caller(context)
        return await self._services.admission.runnable(caller, workflow_id, version or None)

    @translate_errors
    async def SetAlias(
        self, request: workflows_pb2.SetAliasRequest, context: grpc.aio.ServicerContext
    ) -> workflows_pb2.Alias:
        caller = await self._services.admin(context)
        alias = await self._services.db.run(
            lambda session: set_alias(
                session,
                account_id=caller.account_id,
                workflow_id=request.id,
                name=request.name,
                version=request.version,
                actor=caller.key_id,
            )
        )
        # Runs pinning the alias on every replica run the version it points at now.
        await self._services.forget_workflow(request.id)
        return workflows_pb2.Alias(name=alias.name, version=alias.version)

    @translate_errors
    async def GetWorkflow(
        self, request: workflows_pb2.GetWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> workflows_pb2.Workflow:
        caller = await self._services.admin(context)
        workflow = await self._services.db.run(
            lambda session: get_workflow(
                session, account_id=caller.account_id, workflow_id=request.id
            )
        )
        return _workflow(workflow, definition=workflow.draft)

    @translate_errors
    async def ListWorkflows(
        self, request: workflows_pb2.ListWorkflowsRequest, context: grpc.aio.ServicerContext
    ) -> workflows_pb2.ListWorkflowsResponse:
        caller = await self._services.admin(context)
        workflows = await self._services.db.run(
            lambda session: list_workflows(session, account_id=caller.account_id)
        )
        return workflows_pb2.ListWorkflowsResponse(
            workflows=[_workflow(workflow, definition=None) for workflow in workflows]
        )

    async def _save(
        self, caller: Principal, message: struct_pb2.Struct, *, workflow_id: str | None
    ) -> workflows_pb2.Workflow:
        """Validates a definition, then saves it as a new workflow or as a new draft."""
        account_id = caller.account_id
        definition = from_struct(message)
        parsed = parse_definition(definition)
        name, visibility = parsed.name, parsed.visibility

        async def save(session: AsyncSession) -> Workflow:
            if workflow_id is None:
                return await create_workflow(
                    session,
                    account_id=account_id,
                    name=name,
                    visibility=visibility,
                    definition=definition,
                    actor=caller.key_id,
                )
            return await update_workflow_draft(
                session,
                account_id=account_id,
                workflow_id=workflow_id,
                name=name,
                visibility=visibility,
                definition=definition,
                actor=caller.key_id,
            )

        workflow = await self._services.db.run(save)
        # Saving may change the visibility that runs of the published version check.
        await self._services.forget_workflow(workflow.id)
        return _workflow(workflow, definition=workflow.draft)


def _workflow(workflow: Workflow, *, definition: dict[str, Any] | None) -> workflows_pb2.Workflow:
    return workflows_pb2.Workflow(
        id=workflow.id,
        name=workflow.name,
        visibility=workflow.visibility,
        status=workflow.status,
        latest_version=workflow.latest_version,
        definition=struct(definition),
        created_at=timestamp(workflow.created_at),
        updated_at=timestamp(workflow.updated_at),
    )
