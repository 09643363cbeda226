"""`flowport`: serve, and the local administration docs/api.md describes (Command line)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from flowport.engine import compile_workflow, parse_definition
from flowport.errors import FlowportError
from flowport.settings import Settings
from flowport.snippets import LANGS, snippets
from flowport.storage import (
    Database,
    all_allowed_origins,
    create_api_key,
    create_workflow,
    get_or_create_account,
    get_published_workflow,
    list_workflows,
    publish_workflow,
    set_credits,
    update_workflow_draft,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowport", description="Workflows as APIs.")
    commands = parser.add_subparsers(dest="command", required=True)

    serving = commands.add_parser(
        "serve", help="run the gRPC service and Envoy until SIGINT/SIGTERM"
    )
    serving.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="gRPC service processes behind Envoy, on consecutive ports from "
        "FLOWPORT_GRPC_PORT (default 1: the service runs in this process)",
    )
    serving.add_argument(
        "--no-envoy",
        action="store_true",
        help="serve gRPC only, on FLOWPORT_GRPC_PORT, without the bundled Envoy (in a mesh, "
        "behind an Envoy configured by `flowport envoy-config`)",
    )
    # Internal: how the supervisor of --workers N starts each worker.
    serving.add_argument("--worker-port", type=int, default=None, help=argparse.SUPPRESS)
    # Internal: the pipe on which a worker tells its supervisor it serves.
    serving.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    # Internal: how `serve` migrates the database and recovers its runs before it serves.
    serving.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)

    commands.add_parser(
        "migrate",
        help="bring the database's schema to this version's (serve does it too, at start)",
    )

    envoy_config = commands.add_parser(
        "envoy-config",
        help="write what an Envoy of your own needs to serve REST/SSE in front of the service",
    )
    envoy_config.add_argument(
        "--out", type=Path, required=True, help="the folder to write into (created if missing)"
    )
    envoy_config.add_argument(
        "--upstream",
        action="append",
        type=_upstream,
        help="HOST:PORT of the gRPC service; repeat for several (default: "
        "FLOWPORT_HOST:FLOWPORT_GRPC_PORT). A name is looked up, every address an endpoint",
    )
    envoy_config.add_argument(
        "--mount-dir",
        type=Path,
        default=None,
        help="the folder where that Envoy will find the files (default: --out)",
    )

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="create a key and print it (shown only now)")
    create.add_argument("--account", required=True, help="the account; created if missing")
    create.add_argument("--admin", action="store_true", help="scopes admin and run (else: run)")
    create.add_argument("--name", default="cli", help="a name to recognise the key by")
    create.add_argument(
        "--expires-at",
        type=_rfc3339,
        default=None,
        metavar="TIME",
        help="when the key stops working, RFC 3339 with an offset (2027-01-31T00:00:00Z); "
        "default: never",
    )
    create.add_argument(
        "--workflow",
        action="append",
        default=[],
        dest="workflows",
        metavar="ID",
        help="a workflow of the account the key may run; repeat for more (default: every "
        "workflow; not with --admin)",
    )

    workflows = commands.add_parser("workflows", help="workflows").add_subparsers(
        dest="action", required=True
    )
    publish = workflows.add_parser(
        "publish", help="save a definition (JSON or YAML) and publish it as a new version"
    )
    publish.add_argument("file", type=Path, help="the workflow definition")
    publish.add_argument("--account", required=True, help="the owning account; created if missing")
    snippet = workflows.add_parser(
        "snippet",
        help="print code that calls a published workflow (the key read from the "
        "environment variable FLOWPORT_API_KEY)",
    )
    snippet.add_argument("workflow_id", metavar="ID", help="the workflow's id")
    snippet.add_argument("--lang", choices=LANGS, default="curl", help="the language (curl)")

    accounts = commands.add_parser("accounts", help="accounts").add_subparsers(
        dest="action", required=True
    )
    credits = accounts.add_parser(
        "set-credits", help="give an account N run credits; each run spends one"
    )
    credits.add_argument("account", help="the account's name; created if missing")
    credits.add_argument(
        "credits", type=_credits, help="a whole number >= 0, or `unlimited` (the default)"
    )

    commands.add_parser("demo", help="publish the demo workflows and print a key to try them")

    args = parser.parse_args(argv)
    if args.command == "serve" and args.no_envoy and args.workers > 1:
        parser.error("serve: --no-envoy serves one process; scale with more replicas")
    try:
        settings = Settings()
    except ValidationError as error:
        for problem in error.errors():
            # A field's error names its variable; the TLS files' pairing names its own.
            where = "".join(f"FLOWPORT_{str(part).upper()}" for part in problem["loc"][:1])
            print(
                f"flowport: configuration: {where + ': ' if where else ''}{problem['msg']}",
                file=sys.stderr,
            )
        return 1
    _configure_logging(settings.log_level)
    if (
        args.command == "serve"
        and not args.no_envoy
        and (mismatch := settings.bundled_envoy_problem())
    ):
        print(f"flowport: configuration: {mismatch}", file=sys.stderr)
        return 1
    if args.command == "serve":
        # Read by grpc when it loads. Its fork handlers are for children that go on using
        # gRPC; Flowport's children (Envoy, workers, the migration) exec at once, and the
        # handlers only printed a warning at every start.
        os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
        import uvloop

        from flowport.server.app import prepare_database, serve, serve_worker

        if args.prepare_only:
            asyncio.run(prepare_database(settings))
            return 0
        if args.worker_port is not None:
            work = serve_worker(settings, args.worker_port, args.ready_fd)
        else:
            work = serve(settings, workers=args.workers, with_envoy=not args.no_envoy)
        # uvloop: the same asyncio API with less overhead per callback and socket event.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(work)
    if args.command == "migrate":
        from flowport.server.app import prepare_database

        if settings.database_url is None:  # SQLite, in the data directory
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(prepare_database(settings))
        print("database migrated", file=sys.stderr)
        return 0
    if args.command == "envoy-config":
        from flowport.envoy import write_mesh_config

        upstreams = args.upstream or [(settings.host, settings.grpc_port)]
        origins = asyncio.run(_allowed_origins(settings))
        for path in write_mesh_config(
            settings,
            args.out,
            upstreams=upstreams,
            mount_dir=args.mount_dir,
            allowed_origins=origins,
        ):
            print(path)
        return 0
    if args.command == "keys":
        scopes = ["admin", "run"] if args.admin else ["run"]
        try:
            secret = asyncio.run(
                _create_key(
                    settings,
                    args.account,
                    args.name,
                    scopes,
                    expires_at=args.expires_at,
                    workflows=args.workflows,
                )
            )
        except FlowportError as error:
            print(f"flowport: {error.message}", file=sys.stderr)
            return 1
        print(secret)
        return 0
    if args.command == "workflows" and args.action == "snippet":
        try:
            code = asyncio.run(_snippet(settings, args.workflow_id, args.lang))
        except FlowportError as error:
            print(f"flowport: {error.message}", file=sys.stderr)
            return 1
        print(code, end="")
        return 0
    if args.command == "workflows":
        try:
            definition = _load_definition(args.file)
            workflow_id, version = asyncio.run(_publish(settings, args.account, definition))
        except (OSError, yaml.YAMLError, FlowportError) as error:
            print(f"flowport: {args.file}: {getattr(error, 'message', error)}", file=sys.stderr)
            return 1
        print(f"{workflow_id} version {version}")
        return 0
    if args.command == "accounts":
        asyncio.run(_set_credits(settings, args.account, args.credits))
        shown = "unlimited" if args.credits is None else args.credits
        print(f"{args.account}: {shown} run credits")
        return 0
    if args.command == "demo":
        return asyncio.run(_demo(settings))
    return 2


def _configure_logging(level: str) -> None:
    """Flowport's own lines at `level`; libraries (Alembic, gRPC, aiohttp...) say only
    warnings and errors, unless `level` is DEBUG."""
    logging.basicConfig(
        level=logging.DEBUG if level == "DEBUG" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("flowport").setLevel(level)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _rfc3339(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an RFC 3339 time with an offset (2027-01-31T00:00:00Z)"
        )
    return value.astimezone(UTC)


def _upstream(text: str) -> tuple[str, int]:
    from flowport.envoy import parse_upstream

    try:
        return parse_upstream(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _credits(text: str) -> int | None:
    if text == "unlimited":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0 nor `unlimited`")
    return int(text)


async def _set_credits(settings: Settings, account: str, credits: int | None) -> None:
    db = await _open(settings)
    try:
        async with db.session() as session:
            await set_credits(session, name=account, credits=credits)
    finally:
        await db.dispose()


def _load_definition(path: Path) -> object:
    text = path.read_text(encoding="utf-8")
    # JSON is read as JSON (YAML 1.1 would differ on edge cases), anything else as YAML.
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


async def _publish(settings: Settings, account: str, definition: object) -> tuple[str, int]:
    """Creates the workflow, or saves a new draft of the account's workflow of the same name,
    and publishes it."""
    parsed = parse_definition(definition)
    assert isinstance(definition, dict)  # parse_definition accepts JSON objects only
    db = await _open(settings)
    try:
        async with db.session() as session:
            owner = await get_or_create_account(session, name=account)
            same_name = [
                w
                for w in await list_workflows(session, account_id=owner.id)
                if w.name == parsed.name
            ]
            if same_name:
                workflow = await update_workflow_draft(
                    session,
                    account_id=owner.id,
                    workflow_id=same_name[0].id,
                    name=parsed.name,
                    visibility=parsed.visibility,
                    definition=definition,
                )
            else:
                workflow = await create_workflow(
                    session,
                    account_id=owner.id,
                    name=parsed.name,
                    visibility=parsed.visibility,
                    definition=definition,
                )
            version = await publish_workflow(session, account_id=owner.id, workflow_id=workflow.id)
        return workflow.id, version.version
    finally:
        await db.dispose()


async def _create_key(
    settings: Settings,
    account: str,
    name: str,
    scopes: list[str],
    *,
    expires_at: datetime | None = None,
    workflows: list[str] | None = None,
) -> str:
    db = await _open(settings)
    try:
        async with db.session() as session:
            owner = await get_or_create_account(session, name=account)
            _, secret = await create_api_key(
                session,
                account_id=owner.id,
                name=name,
                scopes=scopes,
                expires_at=expires_at,
                workflows=workflows,
            )
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


async def _snippet(settings: Settings, workflow_id: str, lang: str) -> str:
    """The code for the workflow's newest version, addressed to this configuration's port."""
    db = await _open(settings)
    try:
        async with db.session() as session:
            _, version = await get_published_workflow(session, workflow_id=workflow_id)
    finally:
        await db.dispose()
    specs = compile_workflow(parse_definition(version.definition)).in_node.inputs
    return snippets(workflow_id, specs, settings, [lang])[0].code


async def _allowed_origins(settings: Settings) -> list[str]:
    """Every account's allowed origins now: `envoy-config`'s CORS policy. Read, never
    migrated nor created: the command also runs where the database is not there yet (a pod's
    init container before the first start, a build), and then allows none, saying so."""
    if settings.database_url is None and not (settings.data_dir / "flowport.db").exists():
        return []
    db = Database.connect(settings.resolved_database_url)
    try:
        return await db.run(all_allowed_origins)
    except (SQLAlchemyError, OSError) as error:
        reason = str(error).splitlines()[0]
        print(
            f"flowport: could not read the accounts' allowed origins ({reason}); "
            "routes.yaml allows no cross-origin calls until envoy-config runs again",
            file=sys.stderr,
        )
        return []
    finally:
        await db.dispose()


async def _open(settings: Settings) -> Database:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database.connect(settings.resolved_database_url)
    await db.migrate()
    return db


if __name__ == "__main__":
    sys.exit(main())
