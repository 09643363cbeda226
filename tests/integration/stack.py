"""The real stack for integration tests: `flowport serve` (gRPC service + Envoy) as a
subprocess on free ports, driven over HTTP and gRPC like a user would."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import sqlalchemy
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flowport.envoy import envoy_binary
from flowport.ids import random_token
from flowport.storage import Database, create_api_key, get_or_create_account

REPO = Path(__file__).resolve().parents[2]
FLOWPORT = Path(sys.executable).parent / "flowport"


_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now and never handed out before in this test process: stacks built
    before any of them starts must not be given the same port twice."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive ports, all free now, below the kernel's ephemeral
    range: a port from bind(0) is in that range, and its neighbour may be taken by any
    outgoing connection before a worker binds it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for base in range(low - count, 10_000, -count):
        ports = range(base, base + count)
        if _handed_out.isdisjoint(ports) and all(_bindable(port) for port in ports):
            _handed_out.update(ports)
            return base
    raise RuntimeError(f"no {count} consecutive free ports below {low}")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


T = TypeVar("T")


def trusting(ca: Path | None) -> ssl.SSLContext | bool:
    """httpx's `verify`: the system's trust store, or the CA given (a test's own)."""
    return True if ca is None else ssl.create_default_context(cafile=ca)


def wait_for(condition: Callable[[], T], timeout_s: float = 10.0, what: str = "condition") -> T:
    """The condition's first true value, asked every 50 ms."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Stack:
    data_dir: Path
    database_url: str
    llm_base_url: str | None
    extra_env: dict[str, str] = field(default_factory=dict)
    # `flowport serve --workers N`: N service processes on grpc_port, grpc_port + 1, ...
    workers: int = 1
    # False: `flowport serve --no-envoy`, the gRPC service alone (EnvoyFront puts one before it).
    envoy: bool = True
    # HTTPS on Envoy's port (FLOWPORT_TLS_CERT in extra_env): the CA its clients trust.
    tls_ca: Path | None = None
    # How a client reaches the gRPC service directly: its mTLS credentials, if it has any.
    grpc_credentials: grpc.ChannelCredentials | None = None
    # The `flowport` to run, and where: this checkout's by default.
    executable: Path = FLOWPORT
    cwd: Path = REPO
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    # Every stack its own: the default 9464 would be taken by the first stack started.
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if self.workers > 1:
            self.grpc_port = consecutive_free_ports(self.workers)

    @property
    def base_url(self) -> str:
        scheme = "http" if self.tls_ca is None else "https"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """httpx's `verify` for Envoy's port."""
        return trusting(self.tls_ca)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def envoy_target(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "FLOWPORT_HTTP_PORT": str(self.http_port),
            "FLOWPORT_GRPC_PORT": str(self.grpc_port),
            "FLOWPORT_ADMIN_PORT": str(self.admin_port),
            "FLOWPORT_METRICS_PORT": str(self.metrics_port),
            "FLOWPORT_DATA_DIR": str(self.data_dir),
            "DATABASE_URL": self.database_url,
            "FLOWPORT_SHUTDOWN_GRACE_S": "2",
            **self.extra_env,
        }
        env.pop("FLOWPORT_LLM_BASE_URL", None)
        if self.llm_base_url:
            env.update(
                FLOWPORT_LLM_BASE_URL=self.llm_base_url,
                FLOWPORT_LLM_API_KEY="sk-test",
                FLOWPORT_LLM_MODEL="fake-model",
            )
        return env

    def start(self, timeout_s: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "serve.log").open("ab")
        command = [str(self.executable), "serve"]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        if not self.envoy:
            command.append("--no-envoy")
        self.process = subprocess.Popen(
            command, env=self.env(), stdout=log, stderr=log, cwd=self.cwd
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"flowport serve exited early:\n{self.log()}")
            if self.ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"flowport serve did not become ready:\n{self.log()}")

    def ready(self) -> bool:
        if not self.envoy:
            return self.health() == "SERVING"
        try:
            # 401 proves the whole path: Envoy, the transcoder and the service.
            keys = httpx.get(f"{self.base_url}/v1/keys", timeout=1, verify=self.verify)
            return keys.status_code == 401
        except httpx.HTTPError:
            return False

    def grpc_channel(self) -> grpc.Channel:
        """A channel straight to the gRPC service (not through Envoy)."""
        if self.grpc_credentials is None:
            return grpc.insecure_channel(self.grpc_target)
        return grpc.secure_channel(self.grpc_target, self.grpc_credentials)

    def health(self) -> str | None:
        """The gRPC service's overall health status, asked directly; None when it does not
        answer."""
        with self.grpc_channel() as channel:
            try:
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
            except grpc.RpcError:
                return None
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        """Dies as a crash would: the service with SIGKILL, no chance to clean up; then its
        Envoy (a process of its own), which would otherwise go on answering 503."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(str(self.data_dir).encode() in part for part in cmdline) and any(
                part.endswith(b"envoy") for part in cmdline[:1]
            ):
                os.kill(int(pid), signal.SIGKILL)

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """`flowport ARGS...` against this stack's database, as a user would type it; `env`
        adds to (or replaces) its environment."""
        return subprocess.run(
            [str(self.executable), *args],
            env={**self.env(), **env},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def log(self) -> str:
        parts = []
        for name in ("serve.log", "envoy.log"):
            path = self.data_dir / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def running_run(self, workflow_id: str) -> str:
        """The id of the workflow's run in progress, read as an operator would, from the
        database (a blocking run's row is committed within RunService's BLOCKING_ROW_DELAY_S)."""
        engine = sqlalchemy.create_engine(self.database_url)

        def running() -> list[Any]:
            with engine.connect() as connection:
                return list(
                    connection.execute(
                        sqlalchemy.text(
                            "SELECT id FROM runs WHERE workflow_id = :w AND status = 'running'"
                        ),
                        {"w": workflow_id},
                    ).all()
                )

        try:
            rows = wait_for(running, timeout_s=5, what="the run's row")
        finally:
            engine.dispose()
        assert len(rows) == 1, rows
        return str(rows[0][0])

    def create_key(
        self, *, account: str | None = None, scopes: tuple[str, ...] = ("admin", "run")
    ) -> tuple[str, str]:
        """A key made the way `flowport keys create` makes one: straight in the database.
        Returns (account name, key)."""
        account = account or f"acct-{random_token(8)}"
        return account, asyncio.run(self._create_key(account, list(scopes)))

    async def _create_key(self, account: str, scopes: list[str]) -> str:
        db = Database.connect(self.database_url)
        try:
            async with db.session() as session:
                owner = await get_or_create_account(session, name=account)
                _, secret = await create_api_key(
                    session, account_id=owner.id, name="test", scopes=scopes
                )
            return secret
        finally:
            await db.dispose()


@dataclass
class EnvoyFront:
    """An Envoy of its own, as a mesh or a gateway runs one: started from what
    `flowport envoy-config` writes, in front of a `flowport serve --no-envoy` stack."""

    stack: Stack
    out: Path
    # HTTPS (FLOWPORT_TLS_CERT in the stack's environment): the CA its clients trust.
    tls_ca: Path | None = None
    # Below the ephemeral range, like the workers' ports: no outgoing connection takes them
    # between now and Envoy's start.
    http_port: int = field(default_factory=lambda: consecutive_free_ports(1))
    admin_port: int = field(default_factory=lambda: consecutive_free_ports(1))
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        scheme = "http" if self.tls_ca is None else "https"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def write_config(self, *args: str) -> list[Path]:
        """`flowport envoy-config --out OUT --upstream <the stack's gRPC port> ARGS...`; the
        paths it printed."""
        written = self.stack.cli(
            "envoy-config",
            "--out",
            str(self.out),
            "--upstream",
            self.stack.grpc_target,
            *args,
            FLOWPORT_HTTP_PORT=str(self.http_port),
            FLOWPORT_ADMIN_PORT=str(self.admin_port),
        )
        assert written.returncode == 0, written.stderr
        return [Path(line) for line in written.stdout.splitlines()]

    def start(self, timeout_s: float = 30.0) -> None:
        self.write_config()
        log = (self.out / "envoy.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(envoy_binary()),
                "--config-path",
                str(self.out / "envoy.yaml"),
                "--disable-hot-restart",
                "--log-level",
                "warn",
                "--concurrency",
                "1",
            ],
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"envoy exited early:\n{self.log()}")
            try:
                keys = httpx.get(
                    f"{self.base_url}/v1/keys", timeout=1, verify=trusting(self.tls_ca)
                )
                if keys.status_code == 401:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"envoy did not become ready:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        path = self.out / "envoy.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""
