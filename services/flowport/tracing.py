"""OpenTelemetry traces, configured by the standard OTEL_* variables alone and off unless
they name where spans go (docs/observability.md).

On, each gRPC call (a REST call through Envoy too, whose headers arrive as metadata)
continues the caller's W3C `traceparent`: a span for the call, one for the run, one per
node, and one per outbound HTTP call (the LLM provider, http nodes, webhooks), which
carries `traceparent` onward. Off, nothing of OpenTelemetry is imported, and the run path
makes no span: each place that would checks for a tracer once."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = logging.getLogger(__name__)

INSTRUMENTATION = "flowport"
DEFAULT_SERVICE_NAME = "flowport"
# OTEL_TRACES_EXPORTER values this service has an exporter for.
EXPORTERS = ("otlp", "console")


def wanted(environ: os._Environ[str] | dict[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables ask for traces. The SDK's own default exporter is OTLP
    to localhost, which would make every service without a collector try to reach one: so
    here an endpoint, or OTEL_TRACES_EXPORTER, must be set."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def start_tracing() -> Tracer | None:
    """This process's tracer, its spans batched to the configured exporter, and outbound
    aiohttp sessions made from now on instrumented; None when traces are not wanted."""
    if not wanted():
        return None
    from opentelemetry import trace
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over this default.
    resource = Resource.create({SERVICE_NAME: DEFAULT_SERVICE_NAME}).merge(Resource.create())
    provider = TracerProvider(resource=resource)
    exporters: list[SpanExporter] = []
    for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(","):
        name = name.strip().lower()
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # Reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT...
            exporters.append(OTLPSpanExporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        elif name and name != "none":
            log.warning("OTEL_TRACES_EXPORTER=%s is not one of %s: ignored", name, EXPORTERS)
    for exporter in exporters:
        # Batched in the SDK's thread (OTEL_BSP_* tune it): never on the event loop.
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    log.info("traces on: %s", ", ".join(type(e).__name__ for e in exporters) or "no exporter")
    return provider.get_tracer(INSTRUMENTATION)


def stop_tracing(tracer: Tracer | None) -> None:
    """Sends the spans still batched before the process ends."""
    if tracer is None:
        return
    from opentelemetry import trace

    provider: Any = trace.get_tracer_provider()
    provider.shutdown()


def _server_span(tracer: Tracer, method: str) -> Any:
    """For one gRPC method: `span(context)`, the call's server span, a child of the trace
    the caller's metadata carries (traceparent), if any."""
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    full_name = method.lstrip("/")
    service, name = full_name.rsplit("/", 1)
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}

    def span(context: Any) -> Any:
        parent = extract(dict(context.invocation_metadata() or ()))
        return tracer.start_as_current_span(
            full_name, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )

    return span


def traced_unary(behavior: Any, tracer: Tracer, method: str) -> Any:
    """A unary handler in a server span that continues the caller's trace."""
    span = _server_span(tracer, method)

    async def handle(request: Any, context: Any) -> Any:
        with span(context):
            return await behavior(request, context)

    return handle


def traced_streaming(behavior: Any, tracer: Tracer, method: str) -> Any:
    """A response-streaming handler in a server span that continues the caller's trace."""
    span = _server_span(tracer, method)

    async def handle(request: Any, context: Any) -> Any:
        with span(context):
            async for message in behavior(request, context):
                yield message

    return handle
