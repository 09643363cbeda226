"""What the bench measures: Flowport (`flowport serve` via the integration tests' Stack) and the
ceiling (an empty grpc.aio handler behind the same Envoy config), each on free ports."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from flowport.envoy import EnvoyProcess, write_config
from flowport.settings import Settings
from tests.bench import procs
from tests.integration.stack import FLOWPORT, REPO, Stack, free_port

BMI_INPUT = {"height": 1.8, "weight": 75}
BMI_OUTPUT = "您的BMI值是23.15"
# The bench measures the run path, not the per-key limiter: one key sends all the load.
UNLIMITED_ENV = {"FLOWPORT_RATE_LIMIT_PER_KEY": "1000000000"}
# The demo workflows and a key, made by the served version's own code (its tables may differ
# from this checkout's); prints them as JSON.
SEED = """
import asyncio, json, sys
from flowport.demo import seed
from flowport.storage import Database

async def main():
    db = Database.connect(sys.argv[1])
    try:
        key, ids = await seed(db)
    finally:
        await db.dispose()
    print(json.dumps({"key": key, "workflow_ids": ids}))

asyncio.run(main())
"""


def run_path(workflow_id: str) -> str:
    return f"/v1/api/workflow/run/{workflow_id}"


def serve_supports_workers() -> bool:
    help_text = subprocess.run(
        [str(FLOWPORT), "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    return "--workers" in help_text


class Flowport:
    """`flowport serve` with the demo workflows published and a key to run them."""

    def __init__(
        self,
        data_dir: Path,
        *,
        llm_base_url: str | None,
        workers: int = 1,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.stack = Stack(
            data_dir=data_dir,
            database_url=f"sqlite:///{data_dir / 'flowport.db'}",
            llm_base_url=llm_base_url,
            extra_env={**UNLIMITED_ENV, **(extra_env or {})},
            workers=workers,
        )
        self.key = ""
        self.workflow_ids: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    @property
    def grpc_target(self) -> str:
        return self.stack.grpc_target

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-KEY": self.key}

    @property
    def bmi_path(self) -> str:
        return run_path(self.workflow_ids["BMI"])

    @property
    def chat_path(self) -> str:
        return run_path(self.workflow_ids["Chat"])

    def processes(self) -> dict[str, list[int]]:
        assert self.stack.process is not None
        return procs.serve_processes(self.stack.process.pid)

    async def start(self) -> None:
        await asyncio.to_thread(self.stack.start)
        seeded = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", SEED, self.stack.database_url],
            env=self.stack.env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        made = json.loads(seeded.stdout.strip().splitlines()[-1])
        self.key, self.workflow_ids = made["key"], made["workflow_ids"]
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as client:
            answer = await client.post(
                self.bmi_path, json={"input": BMI_INPUT}, headers=self.headers
            )
        if answer.status_code != 200 or answer.json().get("output") != BMI_OUTPUT:
            raise RuntimeError(f"the BMI workflow does not answer right: {answer.text}")

    async def stop(self) -> None:
        await asyncio.to_thread(self.stack.stop)

    def log(self) -> str:
        return self.stack.log()


class Ceiling:
    """tests/bench/ceiling.py in a process of its own, behind a second Envoy rendered from
    Flowport's template (same transcoder, Lua and buffer filters, same routes)."""

    path = run_path("ceiling")

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.admin_port = free_port()
        self._server: asyncio.subprocess.Process | None = None
        self._envoy: EnvoyProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    async def start(self, timeout_s: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / "ceiling.log").open("ab") as log:
            self._server = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.bench.ceiling",
                "--port",
                str(self.grpc_port),
                cwd=REPO,
                stdout=log,
                stderr=log,
            )
        settings = Settings(
            host="127.0.0.1",
            http_port=self.http_port,
            admin_port=self.admin_port,
            grpc_port=self.grpc_port,
            data_dir=self.data_dir,
        )
        config = await asyncio.to_thread(write_config, settings, grpc_ports=[self.grpc_port])
        self._envoy = EnvoyProcess(config, log_path=self.data_dir / "envoy.log")
        await self._envoy.start()
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=self.base_url, timeout=1) as client:
            while time.monotonic() < deadline:
                if self._server.returncode is not None or self._envoy.returncode is not None:
                    raise RuntimeError(f"the ceiling exited early:\n{self.log()}")
                try:
                    answer = await client.post(self.path, json={"input": BMI_INPUT})
                    if answer.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the ceiling did not become ready:\n{self.log()}")

    def processes(self) -> dict[str, list[int]]:
        """The same groups as Flowport's: the gRPC server is the service."""
        assert self._server is not None and self._envoy is not None
        envoy = self._envoy.pid
        return {"service": [self._server.pid], "envoy": [] if envoy is None else [envoy]}

    async def stop(self) -> None:
        if self._envoy is not None:
            await self._envoy.stop()
        if self._server is not None and self._server.returncode is None:
            self._server.terminate()
            await self._server.wait()

    def log(self) -> str:
        parts = []
        for name in ("ceiling.log", "envoy.log"):
            path = self.data_dir / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)
