"""`flowport`: serve, and the local administration the contract names (API.md, CLI)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from flowport.settings import Settings
from flowport.storage import Database, create_api_key, get_or_create_account


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowport", description="Workflows as APIs.")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("serve", help="run the gRPC service and Envoy until SIGINT/SIGTERM")

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="create a key and print it (shown only now)")
    create.add_argument("--account", required=True, help="the account; created if missing")
    create.add_argument("--admin", action="store_true", help="scopes admin and run (else: run)")
    create.add_argument("--name", default="cli", help="a name to recognise the key by")

    commands.add_parser("demo", help="publish the demo workflows and print a key to try them")

    args = parser.parse_args(argv)
    settings = Settings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "serve":
        from flowport.server.app import serve

        return asyncio.run(serve(settings))
    if args.command == "keys":
        scopes = ["admin", "run"] if args.admin else ["run"]
        secret = asyncio.run(_create_key(settings, args.account, args.name, scopes))
        print(secret)
        return 0
    if args.command == "demo":
        return asyncio.run(_demo(settings))
    return 2


async def _create_key(settings: Settings, account: str, name: str, scopes: list[str]) -> str:
    db = await _open(settings)
    try:
        async with db.session() as session:
            owner = await get_or_create_account(session, name=account)
            _, secret = await create_api_key(session, account_id=owner.id, name=name, scopes=scopes)
        return secret
    finally:
        await db.dispose()


async def _demo(settings: Settings) -> int:
    from flowport.demo import seed

    db = await _open(settings)
    try:
        secret, ids = await seed(db)
    finally:
        await db.dispose()
    run_url = f"http://{settings.host}:{settings.http_port}/v1/api/workflow/run"
    key_header = f"-H 'X-API-KEY: {secret}'"
    bmi_body = """'{"input":{"height":"1.8","weight":75}}'"""
    chat_body = """'{"input":{"输入":"在吗?"},"stream":true}'"""
    bmi = f"curl -s -X POST {run_url}/{ids['BMI']} {key_header} -d {bmi_body}"
    chat = f"curl -sN -X POST {run_url}/{ids['Chat']} {key_header} -d {chat_body}"
    print(
        f"""
Flowport demo: account "demo", admin key (shown once, keep it):

  {secret}

BMI calculator, blocking (FlowAI style):

  {bmi}

Chat, streamed as Server-Sent Events (needs FLOWPORT_LLM_BASE_URL, FLOWPORT_LLM_API_KEY
and FLOWPORT_LLM_MODEL pointing at an OpenAI-compatible provider):

  {chat}
""",
        file=sys.stderr,
    )
    return 0


async def _open(settings: Settings) -> Database:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database.connect(settings.resolved_database_url)
    await db.migrate()
    return db


if __name__ == "__main__":
    sys.exit(main())
