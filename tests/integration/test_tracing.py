"""Traces, set up by the OTEL_* variables alone: a REST call through Envoy, or a gRPC call,
that carries a W3C `traceparent` continues that trace (a span for the call, the run and
each node, exported over OTLP/HTTP), and the LLM provider and http nodes are called with a
`traceparent` of the same trace. Without the variables nothing is traced or passed on."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from flowport.v1 import runner_pb2, runner_pb2_grpc
from tests.fakes.fake_http import FakeHttp
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api
from tests.integration.stack import Stack, wait_for


class OtlpReceiver:
    """A collector's OTLP/HTTP traces endpoint: `POST /v1/traces` with an
    ExportTraceServiceRequest in protobuf, its spans kept."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], trace_pb2.Span]] = []
        self.content_types: set[str] = set()
        lock = self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                with lock:
                    receiver.content_types.add(self.headers["Content-Type"])
                    for resource_spans in request.resource_spans:
                        resource = {
                            a.key: a.value.string_value for a in resource_spans.resource.attributes
                        }
                        for scope_spans in resource_spans.scope_spans:
                            for span in scope_spans.spans:
                                receiver.spans.append((resource, span))
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def of_trace(self, trace_id: bytes) -> list[trace_pb2.Span]:
        with self.lock:
            return [span for _, span in self.spans if span.trace_id == trace_id]

    def resources(self) -> list[dict[str, Any]]:
        with self.lock:
            return [resource for resource, _ in self.spans]


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver, fake_llm_server: FakeLlm
) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("traced")
    stack = Stack(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'flowport.db'}",
        llm_base_url=fake_llm_server.base_url,
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "flowport-under-test",
            # Spans leave within 100 ms, not the default 5 s.
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "FLOWPORT_FETCH_ALLOW": "127.0.0.1",
        },
    )
    stack.start()
    yield stack
    stack.stop()


def workflow(fake_http: FakeHttp) -> dict[str, Any]:
    """in -> llm -> http (to the fake server) -> out."""
    return {
        "name": "Traced",
        "nodes": [
            {"id": "start", "type": "in", "inputs": [{"name": "q", "type": "text"}]},
            {"id": "ask", "type": "llm", "prompt": "{{ q }}"},
            {"id": "call", "type": "http", "method": "GET", "url": fake_http.url("/echo")},
            {"id": "end", "type": "out", "output": "{{ ask.output }} {{ call.status }}"},
        ],
        "edges": [
            {"from": "start", "to": "ask"},
            {"from": "ask", "to": "call"},
            {"from": "call", "to": "end"},
        ],
    }


def new_traceparent() -> tuple[bytes, bytes, str]:
    trace_id, span_id = secrets.token_bytes(16), secrets.token_bytes(8)
    return trace_id, span_id, f"00-{trace_id.hex()}-{span_id.hex()}-01"


def assert_continued(
    receiver: OtlpReceiver,
    trace_id: bytes,
    caller_span: bytes,
    rpc: str,
    fake_llm: FakeLlm,
    fake_http: FakeHttp,
) -> None:
    def spans() -> list[trace_pb2.Span] | None:
        found = receiver.of_trace(trace_id)
        names = {span.name for span in found}
        wanted = {rpc, "flowport run", "flowport node llm", "flowport node http"}
        return found if wanted <= names and len(found) >= 8 else None

    found = wait_for(spans, timeout_s=15, what="the run's spans at the collector")
    by_name: dict[str, list[trace_pb2.Span]] = {}
    for span in found:
        by_name.setdefault(span.name, []).append(span)
    (call,) = by_name[rpc]
    (run,) = by_name["flowport run"]
    assert call.parent_span_id == caller_span
    assert call.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert run.parent_span_id == call.span_id
    nodes = [
        span
        for name, spans in by_name.items()
        if name.startswith("flowport node")
        for span in spans
    ]
    assert sorted(span.name for span in nodes) == [
        "flowport node http",
        "flowport node in",
        "flowport node llm",
        "flowport node out",
    ]
    assert all(span.parent_span_id == run.span_id for span in nodes)
    # The outbound calls are the nodes' children, and carry the trace onward.
    node_ids = {span.span_id for span in nodes}
    outbound = [s for s in found if s.kind == trace_pb2.Span.SPAN_KIND_CLIENT]
    assert len(outbound) == 2 and all(s.parent_span_id in node_ids for s in outbound)
    llm_headers = fake_llm.request_headers[-1]
    assert llm_headers["traceparent"].split("-")[1] == trace_id.hex()
    (echoed,) = [seen for seen in fake_http.requests if seen.path == "/echo"]
    assert echoed.headers["traceparent"].split("-")[1] == trace_id.hex()


def test_a_rest_call_through_envoy_continues_the_callers_trace(
    traced: Stack, receiver: OtlpReceiver, fake_llm: FakeLlm, fake_http: FakeHttp
) -> None:
    _, key = traced.create_key()
    trace_id, span_id, traceparent = new_traceparent()
    with Api(traced.base_url, key) as api:
        workflow_id = api.publish(workflow(fake_http))
        response = api.run(
            workflow_id, {"q": "hi"}, headers={**api.headers, "traceparent": traceparent}
        )
        assert response.status_code == 200, response.text
    assert_continued(
        receiver, trace_id, span_id, "flowport.v1.FlowAi/RunWorkflow", fake_llm, fake_http
    )
    assert {"service.name": "flowport-under-test"}.items() <= receiver.resources()[0].items()


def test_a_grpc_call_continues_the_callers_trace(
    traced: Stack, receiver: OtlpReceiver, fake_llm: FakeLlm, fake_http: FakeHttp
) -> None:
    _, key = traced.create_key()
    trace_id, span_id, traceparent = new_traceparent()
    with Api(traced.base_url, key) as api:
        workflow_id = api.publish(workflow(fake_http))
    arguments = struct_pb2.Struct()
    arguments.update({"q": "hi"})
    with grpc.insecure_channel(traced.envoy_target) as channel:
        answer = runner_pb2_grpc.WorkflowRunnerStub(channel).Run(
            runner_pb2.RunRequest(workflow_id=workflow_id, input=arguments),
            metadata=[("x-api-key", key), ("traceparent", traceparent)],
        )
    assert answer.output.endswith("200")
    assert_continued(
        receiver, trace_id, span_id, "flowport.v1.WorkflowRunner/Run", fake_llm, fake_http
    )


def test_a_failed_run_is_an_error_span(
    traced: Stack, receiver: OtlpReceiver, fake_llm: FakeLlm, fake_http: FakeHttp
) -> None:
    _, key = traced.create_key()
    trace_id, _, traceparent = new_traceparent()
    fake_llm.set_reply(tokens=None, status=400)
    with Api(traced.base_url, key) as api:
        workflow_id = api.publish(workflow(fake_http))
        api.run(workflow_id, {"q": "hi"}, headers={**api.headers, "traceparent": traceparent})

    def run_span() -> trace_pb2.Span | None:
        return next((s for s in receiver.of_trace(trace_id) if s.name == "flowport run"), None)

    run = wait_for(run_span, timeout_s=15, what="the run's span")
    assert run.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert "400" in run.status.message


def test_without_otel_variables_nothing_is_passed_on(
    api: Api, fake_llm: FakeLlm, fake_http: FakeHttp
) -> None:
    _, _, traceparent = new_traceparent()
    workflow_id = api.publish(workflow(fake_http))
    response = api.run(
        workflow_id, {"q": "hi"}, headers={**api.headers, "traceparent": traceparent}
    )
    assert response.status_code == 200
    assert "traceparent" not in fake_llm.request_headers[-1]
    (echoed,) = [seen for seen in fake_http.requests if seen.path == "/echo"]
    assert "traceparent" not in echoed.headers
