"""Workflows: drafts, publishing into immutable versions, and who may see them."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from flowport.errors import InvalidArgument, NotFound
from flowport.storage import (
    Account,
    Database,
    create_workflow,
    get_published_workflow,
    get_workflow,
    list_workflows,
    publish_workflow,
    update_workflow_draft,
)


def definition(text: str) -> dict[str, object]:
    return {"name": "BMI", "nodes": [{"id": "end", "type": "out", "output": text}], "edges": []}


async def test_a_new_workflow_is_a_draft(session: AsyncSession, account: Account):
    workflow = await create_workflow(
        session, account_id=account.id, name="BMI", visibility="private", definition=definition("1")
    )
    assert workflow.id.startswith("wf_")
    assert (workflow.status, workflow.latest_version) == ("draft", 0)
    assert [w.id for w in await list_workflows(session, account_id=account.id)] == [workflow.id]


async def test_bad_visibility_is_invalid(session: AsyncSession, account: Account):
    with pytest.raises(InvalidArgument):
        await create_workflow(
            session, account_id=account.id, name="x", visibility="secret", definition={}
        )


async def test_publish_makes_consecutive_versions_that_keep_their_definition(
    db: Database, account: Account
):
    async with db.session() as session:
        workflow = await create_workflow(
            session,
            account_id=account.id,
            name="BMI",
            visibility="public",
            definition=definition("v1"),
        )
        published = []
        for text in ("v1", "v2", "v3"):
            await update_workflow_draft(
                session,
                account_id=account.id,
                workflow_id=workflow.id,
                name="BMI",
                visibility="public",
                definition=definition(text),
            )
            published.append(
                await publish_workflow(session, account_id=account.id, workflow_id=workflow.id)
            )
        # A later draft does not touch what was published.
        await update_workflow_draft(
            session,
            account_id=account.id,
            workflow_id=workflow.id,
            name="BMI 2",
            visibility="public",
            definition=definition("draft"),
        )

    assert [version.version for version in published] == [1, 2, 3]
    assert [version.definition for version in published] == [
        definition("v1"),
        definition("v2"),
        definition("v3"),
    ]
    async with db.session() as session:
        loaded, newest = await get_published_workflow(session, workflow_id=workflow.id)
    assert (loaded.latest_version, loaded.status, loaded.name) == (3, "published", "BMI 2")
    assert loaded.draft == definition("draft")
    assert (newest.version, newest.definition) == (3, definition("v3"))


@pytest.mark.parametrize("publishers", [10])
async def test_concurrent_publishes_get_distinct_consecutive_versions(
    db: Database, account: Account, publishers: int
):
    async with db.session() as session:
        workflow = await create_workflow(
            session,
            account_id=account.id,
            name="x",
            visibility="private",
            definition=definition("x"),
        )

    async def publish() -> int:
        async with db.session() as session:
            version = await publish_workflow(
                session, account_id=account.id, workflow_id=workflow.id
            )
            return version.version

    versions = await asyncio.gather(*(publish() for _ in range(publishers)))
    assert sorted(versions) == list(range(1, publishers + 1))
    async with db.session() as session:
        loaded = await get_workflow(session, account_id=account.id, workflow_id=workflow.id)
    assert loaded.latest_version == publishers


async def test_unpublished_or_missing_workflow_is_not_found_for_running(
    session: AsyncSession, account: Account
):
    workflow = await create_workflow(
        session, account_id=account.id, name="x", visibility="public", definition={}
    )
    with pytest.raises(NotFound):
        await get_published_workflow(session, workflow_id=workflow.id)
    with pytest.raises(NotFound):
        await get_published_workflow(session, workflow_id="wf_missing")


async def test_published_workflow_is_found_from_any_account(
    session: AsyncSession, account: Account, other_account: Account
):
    workflow = await create_workflow(
        session, account_id=account.id, name="x", visibility="private", definition={"k": 1}
    )
    await publish_workflow(session, account_id=account.id, workflow_id=workflow.id)
    found, version = await get_published_workflow(session, workflow_id=workflow.id)
    # The owner is on the row: the caller compares it with the key's account.
    assert (found.account_id, found.visibility, version.version) == (account.id, "private", 1)


async def test_another_accounts_workflow_is_not_found(
    session: AsyncSession, account: Account, other_account: Account
):
    workflow = await create_workflow(
        session, account_id=account.id, name="x", visibility="public", definition={}
    )
    with pytest.raises(NotFound):
        await get_workflow(session, account_id=other_account.id, workflow_id=workflow.id)
    with pytest.raises(NotFound):
        await update_workflow_draft(
            session,
            account_id=other_account.id,
            workflow_id=workflow.id,
            name="stolen",
            visibility="public",
            definition={},
        )
    with pytest.raises(NotFound):
        await publish_workflow(session, account_id=other_account.id, workflow_id=workflow.id)
    assert await list_workflows(session, account_id=other_account.id) == []
    loaded = await get_workflow(session, account_id=account.id, workflow_id=workflow.id)
    assert (loaded.name, loaded.latest_version) == ("x", 0)
