"""The demo workflows `make run` publishes: FlowAI's BMI calculator, and a chat (in, llm, out)."""

from __future__ import annotations

from typing import Any

from flowport.engine import parse_definition
from flowport.storage import (
    Database,
    create_api_key,
    create_workflow,
    get_or_create_account,
    list_workflows,
    publish_workflow,
)

DEMO_ACCOUNT = "demo"

BMI: dict[str, Any] = {
    "name": "BMI",
    "visibility": "private",
    "nodes": [
        {
            "id": "start",
            "type": "in",
            "name": "开始",
            "inputs": [
                {"name": "height", "type": "number", "required": True},
                {"name": "weight", "type": "number", "required": True},
            ],
        },
        {
            "id": "calc",
            "type": "template",
            "name": "计算",
            "template": "{{ (weight / (height * height)) | round(2) }}",
        },
        {
            "id": "end",
            "type": "out",
            "name": "结束(输出)1",
            "output": "您的BMI值是{{ calc.output }}",
        },
    ],
    "edges": [{"from": "start", "to": "calc"}, {"from": "calc", "to": "end"}],
}

CHAT: dict[str, Any] = {
    "name": "Chat",
    "visibility": "private",
    "nodes": [
        {
            "id": "myinput",
            "type": "in",
            "name": "开始",
            "inputs": [{"name": "输入", "type": "text", "required": True, "max_length": 4000}],
        },
        {
            "id": "1741675999864",
            "type": "llm",
            "name": "LLM1",
            "system": "You are a helpful assistant. Answer briefly.",
            "prompt": "{{ 输入 }}",
            "memory": True,
        },
        {
            "id": "1741676038250",
            "type": "out",
            "name": "结束(输出)1",
            "output": '{{ nodes["1741675999864"].output }}',
        },
    ],
    "edges": [
        {"from": "myinput", "to": "1741675999864"},
        {"from": "1741675999864", "to": "1741676038250"},
    ],
}


async def seed(db: Database) -> tuple[str, dict[str, str]]:
    """Publishes the demo workflows once (again only if missing) and makes a fresh admin key.
    Returns the key and the workflow ids by name."""
    async with db.session() as session:
        account = await get_or_create_account(session, name=DEMO_ACCOUNT)
        existing = {w.name: w.id for w in await list_workflows(session, account_id=account.id)}
        ids: dict[str, str] = {}
        for definition in (BMI, CHAT):
            parsed = parse_definition(definition)
            if parsed.name in existing:
                ids[parsed.name] = existing[parsed.name]
                continue
            workflow = await create_workflow(
                session,
                account_id=account.id,
                name=parsed.name,
                visibility=parsed.visibility,
                definition=definition,
            )
            await publish_workflow(session, account_id=account.id, workflow_id=workflow.id)
            ids[parsed.name] = workflow.id
        _, secret = await create_api_key(
            session, account_id=account.id, name="demo", scopes=["admin", "run"]
        )
    return secret, ids
