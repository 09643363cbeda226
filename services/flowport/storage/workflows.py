"""Workflows: an editable draft per workflow, and the immutable versions published from it."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.errors import InvalidArgument, NotFound, VersionNotFound
from flowport.jsonbody import ALIAS_NAME, Pin
from flowport.storage.audit import LOCAL_ACTOR, record_event
from flowport.storage.models import Workflow, WorkflowAlias, WorkflowVersion, utc_now

VISIBILITIES = ("private", "public")


def _check_visibility(visibility: str) -> None:
    if visibility not in VISIBILITIES:
        raise InvalidArgument(f"visibility must be one of {', '.join(VISIBILITIES)}")


async def create_workflow(
    session: AsyncSession,
    *,
    account_id: str,
    name: str,
    visibility: str,
    definition: dict[str, Any],
    actor: str = LOCAL_ACTOR,
) -> Workflow:
    """A new workflow with its first draft; `actor` made it (the audit log's key_id)."""
    _check_visibility(visibility)
    workflow = Workflow(account_id=account_id, name=name, visibility=visibility, draft=definition)
    session.add(workflow)
    record_event(
        session,
        account_id=account_id,
        actor=actor,
        action="workflow.created",
        target=workflow.id,
        detail={"name": name, "visibility": visibility},
    )
    await session.commit()
    return workflow


async def get_workflow(session: AsyncSession, *, account_id: str, workflow_id: str) -> Workflow:
    """The account's workflow; another account's is NotFound, so ids do not leak."""
    result = await session.exec(
        select(Workflow).where(Workflow.id == workflow_id, Workflow.account_id == account_id)
    )
    workflow = result.first()
    if workflow is None:
        raise NotFound(f"workflow {workflow_id} not found")
    return workflow


async def list_workflows(session: AsyncSession, *, account_id: str) -> list[Workflow]:
    """The account's workflows, newest first."""
    result = await session.exec(
        select(Workflow)
        .where(Workflow.account_id == account_id)
        .order_by(col(Workflow.created_at).desc(), col(Workflow.id))
    )
    return list(result.all())


async def update_workflow_draft(
    session: AsyncSession,
    *,
    account_id: str,
    workflow_id: str,
    name: str,
    visibility: str,
    definition: dict[str, Any],
    actor: str = LOCAL_ACTOR,
) -> Workflow:
    _check_visibility(visibility)
    workflow = await get_workflow(session, account_id=account_id, workflow_id=workflow_id)
    workflow.name = name
    workflow.visibility = visibility
    workflow.draft = definition
    workflow.updated_at = utc_now()
    session.add(workflow)
    record_event(
        session,
        account_id=account_id,
        actor=actor,
        action="workflow.saved",
        target=workflow_id,
        detail={"name": name, "visibility": visibility},
    )
    await session.commit()
    return workflow


async def publish_workflow(
    session: AsyncSession, *, account_id: str, workflow_id: str, actor: str = LOCAL_ACTOR
) -> WorkflowVersion:
    """Makes the current draft the next version."""
    # One statement bumps the counter and reads the draft: the row lock (PostgreSQL) or the
    # write lock (SQLite) orders concurrent publishes, so each gets its own next number and
    # the draft that goes with it. The unique (workflow_id, version) constraint backs this up.
    result = await session.exec(
        update(Workflow)
        .where(col(Workflow.id) == workflow_id, col(Workflow.account_id) == account_id)
        .values(latest_version=col(Workflow.latest_version) + 1, updated_at=utc_now())
        .returning(col(Workflow.latest_version), col(Workflow.draft))
    )
    row = result.first()
    if row is None:
        # Nothing was written. Commit, not rollback: a rollback would expire every object
        # the caller's session holds.
        await session.commit()
        raise NotFound(f"workflow {workflow_id} not found")
    number, draft = row
    version = WorkflowVersion(workflow_id=workflow_id, version=number, definition=draft)
    session.add(version)
    record_event(
        session,
        account_id=account_id,
        actor=actor,
        action="workflow.published",
        target=workflow_id,
        detail={"version": number},
    )
    await session.commit()
    return version


def check_alias_name(name: str) -> None:
    if not ALIAS_NAME.fullmatch(name):
        raise InvalidArgument.at(
            "name", "an alias is a letter, then up to 62 letters, digits, _ or -"
        )


async def set_alias(
    session: AsyncSession,
    *,
    account_id: str,
    workflow_id: str,
    name: str,
    version: int,
    actor: str = LOCAL_ACTOR,
) -> WorkflowAlias:
    """Points the account's workflow's alias `name` at a published `version`, creating it or
    moving it; the move is audited with where the alias pointed before."""
    check_alias_name(name)
    if version < 1:
        raise InvalidArgument.at("version", "must be a published version, 1 or more")
    workflow = await get_workflow(session, account_id=account_id, workflow_id=workflow_id)
    if version > workflow.latest_version:
        raise VersionNotFound(f"workflow {workflow_id} has no published version {version}")
    result = await session.exec(
        select(WorkflowAlias).where(
            WorkflowAlias.workflow_id == workflow_id, WorkflowAlias.name == name
        )
    )
    alias = result.first()
    previous = None if alias is None else alias.version
    if alias is None:
        alias = WorkflowAlias(workflow_id=workflow_id, name=name, version=version)
    alias.version = version
    alias.updated_at = utc_now()
    session.add(alias)
    record_event(
        session,
        account_id=account_id,
        actor=actor,
        action="workflow.alias_moved",
        target=workflow_id,
        detail={"name": name, "version": version, "previous_version": previous},
    )
    await session.commit()
    return alias


async def get_published_workflow(
    session: AsyncSession, *, workflow_id: str, version: Pin = None
) -> tuple[Workflow, WorkflowVersion]:
    """The workflow and its newest version (or the version `version` numbers or names),
    whoever owns it; the caller checks visibility."""
    workflow = await session.get(Workflow, workflow_id, populate_existing=True)
    if workflow is None or workflow.latest_version == 0:
        raise NotFound(f"workflow {workflow_id} not found")
    number = workflow.latest_version if version is None else version
    if isinstance(number, str):
        aliased = await session.exec(
            select(WorkflowAlias.version).where(
                WorkflowAlias.workflow_id == workflow_id, WorkflowAlias.name == number
            )
        )
        found_number = aliased.first()
        if found_number is None:
            raise VersionNotFound(f"workflow {workflow_id} has no alias {number}")
        number = found_number
    result = await session.exec(
        select(WorkflowVersion).where(
            WorkflowVersion.workflow_id == workflow_id, WorkflowVersion.version == number
        )
    )
    found = result.first()
    if found is None:
        raise VersionNotFound(f"workflow {workflow_id} has no published version {number}")
    return workflow, found


async def list_aliases(session: AsyncSession, *, workflow_id: str) -> list[WorkflowAlias]:
    """The workflow's aliases, by name."""
    result = await session.exec(
        select(WorkflowAlias)
        .where(WorkflowAlias.workflow_id == workflow_id)
        .order_by(col(WorkflowAlias.name))
    )
    return list(result.all())
