"""The grpc.aio server: `create_server` builds it, `serve` runs it with Envoy until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import make_url

from flowport.admission import RUN_JOB
from flowport.auth import Authenticator
from flowport.cors import Origins
from flowport.engine import LlmClient, create_llm_client
from flowport.envoy import STREAM_IDLE_TIMEOUT_S, EnvoyProcess, write_config, write_serve_routes
from flowport.idempotency import Idempotency
from flowport.jobs import Jobs, open_jobs
from flowport.metrics import (
    MULTIPROC_DIR_VARIABLE,
    Metrics,
    prepare_workers_dir,
    start_exporter,
)
from flowport.outbound import FetchPolicy, Outbound
from flowport.ratelimit import RateLimiter
from flowport.replicas import Replica, reap
from flowport.run_log import Notices, RunLogReader
from flowport.run_path import RunPath
from flowport.server.accounts import AccountsServicer
from flowport.server.audit import AuditServicer
from flowport.server.context import Services
from flowport.server.decoding import LenientHandlers
from flowport.server.flowai import FlowAiServicer
from flowport.server.keys import ApiKeysServicer
from flowport.server.linkai import LinkAiServicer
from flowport.server.runner import WorkflowRunnerServicer
from flowport.server.runs import RunsServicer
from flowport.server.webhooks import WebhooksServicer
from flowport.server.workflows import WorkflowsServicer
from flowport.settings import Settings
from flowport.storage import Database
from flowport.tracing import start_tracing, stop_tracing
from flowport.v1 import (
    account_pb2,
    account_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    flowai_pb2,
    flowai_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
    linkai_pb2,
    linkai_pb2_grpc,
    runner_pb2,
    runner_pb2_grpc,
    runs_pb2,
    runs_pb2_grpc,
    webhooks_pb2,
    webhooks_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)
from flowport.webhooks import DELIVER

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = logging.getLogger(__name__)

# What a worker writes on its readiness pipe once it serves.
READY = b"serving\n"

SERVICE_NAMES = tuple(
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in (
        (runner_pb2, "WorkflowRunner"),
        (flowai_pb2, "FlowAi"),
        (linkai_pb2, "LinkAi"),
        (keys_pb2, "ApiKeys"),
        (workflows_pb2, "Workflows"),
        (runs_pb2, "Runs"),
        (webhooks_pb2, "Webhooks"),
        (audit_pb2, "Audit"),
        (account_pb2, "Accounts"),
    )
)


@dataclass
class FlowportServer:
    """A started gRPC server and what it owns."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    services: Services
    jobs: Jobs
    outbound: Outbound
    llm: LlmClient | None
    metrics: Metrics
    tracer: Tracer | None
    # The health service alone on FLOWPORT_HEALTH_PORT, without TLS, when it is set.
    health_server: grpc.aio.Server | None = None
    # A worker of `--workers` syncs its metrics' files from a thread; stopping it syncs last.
    stop_metrics_sync: Callable[[], None] | None = None

    async def stop(self, grace_s: float) -> None:
        # NOT_SERVING first, so a health-checking proxy stops sending new work.
        await self.health.enter_graceful_shutdown()
        # Calls and jobs under way get the grace period, together; jobs cut short go back
        # to the queue (a background run cut short ends cancelled: it never runs twice).
        # The health port goes on saying NOT_SERVING meanwhile.
        await asyncio.gather(self.server.stop(grace_s), self.jobs.stop())
        if self.health_server is not None:
            await self.health_server.stop(None)
        # Outcomes of runs whose clients went away may still be on their way to the
        # database: written before the replica leaves and the connections close.
        await self.services.execution.drain()
        await self.services.replica.stop()
        await self.outbound.aclose()
        if self.llm is not None:
            await self.llm.aclose()
        await self.services.db.dispose()
        stop_tracing(self.tracer)
        if self.stop_metrics_sync is not None:
            self.stop_metrics_sync()


async def prepare_database(settings: Settings) -> None:
    """Migrates the database and fails the runs of replicas that stopped without ending them
    (a crash): once per start, before any replica of this start takes runs."""
    db = Database.connect(settings.resolved_database_url)
    try:
        await db.migrate()
        await reap(db, lease_s=settings.run_lease_s, log_retention_s=settings.run_log_retention_s)
    finally:
        await db.dispose()


def _tune_garbage_collector() -> None:
    """Objects alive once the service has started (imported code, the servicers) are moved
    out of the collector's sight, and the youngest generation is collected every 10,000
    allocations instead of every 700: a run allocates thousands of short-lived objects
    that reference counting frees anyway, so collecting them costs more than it frees."""
    gc.collect()  # startup's own garbage, rather than frozen with the rest
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


async def prepare_in_child() -> None:
    """`prepare_database` in a process of its own (`flowport serve --prepare-only`), so that
    Alembic and the memory it used never stay in the serving process; raises if it failed
    (its log says why)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowport.cli", "serve", "--prepare-only"
    )
    if await child.wait() != 0:
        raise RuntimeError(
            f"preparing the database (migration, recovery) failed (exit code {child.returncode})"
        )


async def create_server(
    settings: Settings,
    *,
    port: int | None = None,
    prepare: bool = True,
    with_envoy: bool = False,
) -> FlowportServer:
    """Wires the servicers and starts serving on `port` (0: any free). `prepare`: migrate and
    recover the database first (a worker of `serve --workers` leaves that to its supervisor,
    which does it before any worker takes runs). `with_envoy`: this process keeps the routes
    of the Envoy in the data directory (`flowport serve`, each of its workers)."""
    if prepare:
        await prepare_database(settings)
    db = Database.connect(settings.resolved_database_url)
    metrics = Metrics()
    # Before any outbound HTTP session is made: those made after are instrumented.
    tracer = start_tracing()
    services, jobs, outbound, llm = await _assemble(
        settings, db, metrics, tracer, with_envoy=with_envoy
    )
    # Flowport's own services answer an undecodable request with INVALID_ARGUMENT, count
    # their calls and, with traces on, continue the caller's trace.
    handlers = LenientHandlers(metrics, tracer)
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", settings.max_body_bytes + 65536),
            # A call waits in gRPC's own queue until the event loop takes it up; by default
            # gRPC refuses calls beyond 1,000 waiting (CANCELLED or RESOURCE_EXHAUSTED) and
            # cancels those that waited 30 s, so a burst of streams (each a call held open
            # for its run) was refused while the loop was busy. They wait now, up to the
            # idle timeout after which Envoy would drop them anyway.
            ("grpc.server.max_pending_requests", 100_000),
            ("grpc.server.max_pending_requests_hard_limit", 100_000),
            ("grpc.server_max_unrequested_time_in_server", STREAM_IDLE_TIMEOUT_S),
        ],
    )
    runner_pb2_grpc.add_WorkflowRunnerServicer_to_server(WorkflowRunnerServicer(services), handlers)
    flowai_pb2_grpc.add_FlowAiServicer_to_server(FlowAiServicer(services), handlers)
    linkai_pb2_grpc.add_LinkAiServicer_to_server(LinkAiServicer(services), handlers)
    keys_pb2_grpc.add_ApiKeysServicer_to_server(ApiKeysServicer(services), handlers)
    workflows_pb2_grpc.add_WorkflowsServicer_to_server(WorkflowsServicer(services), handlers)
    runs_pb2_grpc.add_RunsServicer_to_server(RunsServicer(services), handlers)
    webhooks_pb2_grpc.add_WebhooksServicer_to_server(WebhooksServicer(services), handlers)
    audit_pb2_grpc.add_AuditServicer_to_server(AuditServicer(services), handlers)
    account_pb2_grpc.add_AccountsServicer_to_server(AccountsServicer(services), handlers)
    handlers.install(server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )

    address = f"{settings.host}:{settings.grpc_port if port is None else port}"
    credentials = server_credentials(settings)
    if credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, credentials)
    health_server = None
    if settings.health_port is not None:
        # The same servicer: this port says NOT_SERVING as soon as the service drains.
        health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        offset = 0 if port is None else port - settings.grpc_port
        health_server.add_insecure_port(f"{settings.host}:{settings.health_port + offset}")
        await health_server.start()
    await server.start()
    for name in (*SERVICE_NAMES, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return FlowportServer(
        server=server,
        port=bound,
        health=health_servicer,
        services=services,
        jobs=jobs,
        outbound=outbound,
        llm=llm,
        health_server=health_server,
        metrics=metrics,
        tracer=tracer,
        stop_metrics_sync=(
            metrics.sync_in_background() if os.environ.get(MULTIPROC_DIR_VARIABLE) else None
        ),
    )


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """mTLS for the service's port (FLOWPORT_GRPC_TLS_*): its certificate, and a client
    certificate signed by FLOWPORT_GRPC_TLS_CA required of every client; None without TLS."""
    if settings.grpc_tls_cert is None or settings.grpc_tls_key is None:
        return None
    assert settings.grpc_tls_ca is not None  # Settings requires it with the certificate
    return grpc.ssl_server_credentials(
        [(settings.grpc_tls_key.read_bytes(), settings.grpc_tls_cert.read_bytes())],
        root_certificates=settings.grpc_tls_ca.read_bytes(),
        require_client_auth=True,
    )


async def _assemble(
    settings: Settings,
    db: Database,
    metrics: Metrics,
    tracer: Tracer | None,
    *,
    with_envoy: bool,
) -> tuple[Services, Jobs, Outbound, LlmClient | None]:
    """The service's parts, wired once, this process registered as a replica, and its jobs
    (background runs, webhook deliveries) begun."""
    replica = Replica(
        db, lease_s=settings.run_lease_s, log_retention_s=settings.run_log_retention_s
    )
    jobs = open_jobs(
        db,
        replica_id=replica.id,
        concurrency=settings.jobs_concurrency,
        grace_s=settings.shutdown_grace_s,
        lease_s=settings.run_lease_s,
    )
    llm = create_llm_client(settings, on_usage=metrics.llm_usage)
    # Fetched files and http nodes: one client, so their connections are reused.
    outbound = Outbound(FetchPolicy.from_settings(settings))
    notices = Notices()
    origins = Origins(
        db, write_routes=functools.partial(write_serve_routes, settings) if with_envoy else None
    )

    def logged(run_ids: list[str]) -> None:
        # Followers on other replicas that watch these runs look at their logs again.
        watched = runs.execution.watched(run_ids)
        if watched:
            replica.publish_soon("logged", *watched)

    runs = RunPath.build(
        settings,
        db,
        replica_id=replica.id,
        llm=llm,
        outbound=outbound,
        jobs=jobs,
        on_logged=logged,
        metrics=metrics,
        tracer=tracer,
    )
    services = Services(
        settings=settings,
        db=db,
        auth=Authenticator(db),
        limiter=RateLimiter(
            settings,
            replicas=lambda: replica.live_count,
            on_limited=metrics.rate_limited_call,
        ),
        catalog=runs.catalog,
        admission=runs.admission,
        execution=runs.execution,
        replica=replica,
        run_log=RunLogReader(
            db,
            live=runs.execution.live,
            watch=lambda run_id: replica.publish_soon("follow", run_id),
            notices=notices,
            heartbeat_s=settings.stream_heartbeat_s,
        ),
        idempotency=Idempotency(db),
        webhooks=runs.webhooks,
        origins=origins,
    )
    replica.on("cancel", runs.execution.cancel_here)
    replica.on("follow", runs.execution.watch)
    replica.on("logged", notices.logged)
    replica.on("forget-key", services.auth.forget)
    replica.on("forget-workflow", runs.catalog.forget)
    replica.every_beat(runs.background.recover)
    replica.every_beat(runs.webhooks.recover)
    replica.on("cors-changed", origins.changed)
    replica.every_beat(origins.write_routes)
    # Before Envoy starts (`serve` starts it once the service serves), so that its first
    # routes already hold every account's origins.
    await origins.write_routes()
    await replica.start()
    await jobs.start({RUN_JOB: runs.background.execute, DELIVER: runs.webhooks.deliver})
    return services, jobs, outbound, llm


@contextlib.asynccontextmanager
async def _stop_signals() -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def serve(settings: Settings, *, workers: int = 1, with_envoy: bool = True) -> int:
    """`flowport serve`: the gRPC service and Envoy in the foreground until SIGINT/SIGTERM;
    the service drains first, then Envoy stops. With `workers` > 1 the service is that many
    child processes on consecutive ports from `grpc_port`, behind the one Envoy. Without
    Envoy (`--no-envoy`), the gRPC service alone, in this process."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await prepare_in_child()
    if workers > 1:
        return await _supervise(settings, workers)
    async with _stop_signals() as stop:
        flowport = await create_server(settings, prepare=False, with_envoy=with_envoy)
        exporter = start_exporter(settings, flowport.metrics.registry)
        _tune_garbage_collector()
        if not with_envoy:
            _announce(settings, [flowport.port], envoy=False)
            await stop.wait()
            log.info("stopping: draining runs for up to %.0f s", settings.shutdown_grace_s)
            await flowport.stop(settings.shutdown_grace_s)
            if exporter is not None:
                exporter.stop()
            return 0
        envoy = EnvoyProcess(
            write_config(settings, grpc_ports=[flowport.port]),
            log_path=settings.data_dir / "envoy.log",
        )
        await envoy.start()
        _announce(settings, [flowport.port])
        envoy_exit = asyncio.ensure_future(envoy.wait())
        stop_wait = asyncio.ensure_future(stop.wait())
        await asyncio.wait({envoy_exit, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        code = 0
        if envoy_exit.done():
            code = envoy_exit.result() or 1
            log.error("envoy exited with code %s; see %s", code, settings.data_dir / "envoy.log")
        log.info("stopping: draining runs for up to %.0f s", settings.shutdown_grace_s)
        await flowport.stop(settings.shutdown_grace_s)
        await envoy.stop()
        if exporter is not None:
            exporter.stop()
        return code


def _announce(settings: Settings, grpc_ports: list[int], *, envoy: bool = True) -> None:
    """The lines a person starting the service wants: where it listens, on what database."""
    host = settings.host
    workers = len(grpc_ports)
    ports = str(grpc_ports[0]) if workers == 1 else f"{grpc_ports[0]}-{grpc_ports[-1]}"
    database = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    mtls = ", mTLS" if settings.grpc_tls else ""
    if envoy:
        scheme = "http" if settings.tls_cert is None else "https"
        log.info("REST and gRPC on %s://%s:%d (Envoy)", scheme, host, settings.http_port)
        log.info("web console on %s://%s:%d/console/", scheme, host, settings.http_port)
        plural = "s"[: workers - 1]
        log.info("gRPC service on %s:%s (%d worker%s%s)", host, ports, workers, plural, mtls)
        log.info("Envoy admin on http://%s:%d", settings.admin_host, settings.admin_port)
    else:
        log.info("gRPC service on %s:%s (no Envoy: gRPC only%s)", host, ports, mtls)
    if settings.health_port is not None:
        last = settings.health_port + workers - 1
        health = str(settings.health_port) if workers == 1 else f"{settings.health_port}-{last}"
        log.info("gRPC health alone, without TLS, on %s:%s", host, health)
    if settings.metrics_port:
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    log.info("database %s", database)


async def serve_worker(settings: Settings, port: int, ready_fd: int | None = None) -> int:
    """One worker of `flowport serve --workers N`: the gRPC service on `port` until SIGTERM,
    then it drains like a single process does. Once it serves, it says so on `ready_fd`."""
    async with _stop_signals() as stop:
        # A worker is always behind the supervisor's Envoy (--no-envoy serves one process).
        flowport = await create_server(settings, port=port, prepare=False, with_envoy=True)
        _tune_garbage_collector()
        if ready_fd is not None:
            os.write(ready_fd, READY)
            os.close(ready_fd)
        await stop.wait()
        await flowport.stop(settings.shutdown_grace_s)
    return 0


async def _supervise(settings: Settings, workers: int) -> int:
    """Starts the workers, then Envoy in front of them; on a signal (or a child's exit) the
    workers drain, then Envoy stops."""
    ports = [settings.grpc_port + n for n in range(workers)]
    # Set before the workers start: they inherit it, and count into files there.
    workers_dir = prepare_workers_dir() if settings.metrics_port else None
    async with _stop_signals() as stop:
        exporter = start_exporter(settings, None, workers_dir=workers_dir)
        started = [await _start_worker(port) for port in ports]
        children = [child for child, _ in started]
        envoy: EnvoyProcess | None = None
        code = 0
        try:
            await asyncio.gather(
                *(
                    _until_serving(port, child, ready)
                    for port, (child, ready) in zip(ports, started, strict=True)
                )
            )
            envoy = EnvoyProcess(
                write_config(settings, grpc_ports=ports),
                log_path=settings.data_dir / "envoy.log",
            )
            await envoy.start()
            _announce(settings, ports)
            exits = {asyncio.ensure_future(c.wait()): f"worker pid {c.pid}" for c in children}
            exits[asyncio.ensure_future(envoy.wait())] = "envoy"
            stop_wait = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({*exits, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            for future in (*exits, stop_wait):
                if future not in done:
                    future.cancel()
            for future in done:
                if future is not stop_wait:
                    code = future.result() or 1
                    log.error("%s exited with code %s; stopping", exits[future], code)
        finally:
            log.info("stopping: draining runs for up to %.0f s", settings.shutdown_grace_s)
            await asyncio.gather(*(_stop_worker(c, settings.shutdown_grace_s) for c in children))
            if exporter is not None:
                for child in children:
                    exporter.worker_gone(child.pid)
            if envoy is not None:
                await envoy.stop()
            if exporter is not None:
                exporter.stop()
        return code


async def _start_worker(port: int) -> tuple[asyncio.subprocess.Process, int]:
    """A worker, and the reading end of the pipe on which it says it serves."""
    ready_read, ready_write = os.pipe()
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "flowport.cli",
            "serve",
            "--worker-port",
            str(port),
            "--ready-fd",
            str(ready_write),
            pass_fds=(ready_write,),
            # Its own process group, like Envoy: a Ctrl-C reaches the supervisor only, which
            # then drains every worker before it stops Envoy.
            start_new_session=True,
        )
    finally:
        os.close(ready_write)
    return child, ready_read


async def _until_serving(
    port: int, child: asyncio.subprocess.Process, ready: int, timeout_s: float = 60.0
) -> None:
    """Waits until the worker says it serves (its health service answers SERVING): on a pipe
    rather than by asking it, which would need a client certificate when its port has mTLS."""
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    loop.add_reader(ready, readable.set)
    try:
        await asyncio.wait_for(readable.wait(), timeout_s)
        said = os.read(ready, len(READY))
    except TimeoutError:
        raise RuntimeError(f"worker on port {port} did not start in {timeout_s:.0f} s") from None
    finally:
        loop.remove_reader(ready)
        os.close(ready)
    if said != READY:  # the pipe closed: the worker exited
        raise RuntimeError(f"worker on port {port} exited with code {await child.wait()}")


async def _stop_worker(child: asyncio.subprocess.Process, grace_s: float) -> None:
    if child.returncode is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(child.wait(), grace_s + 5)
    except TimeoutError:
        log.warning("worker pid %d did not stop in time; killing it", child.pid)
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
