"""gRPC-Web on the public port: requests framed as browser libraries (grpc-web, Connect) frame
them, over HTTP/1.1, through Envoy's grpc_web filter to the gRPC services; and Connect-ES's
own gRPC-Web transport (sdk/grpc/web) on the stubs sdk/grpc/buf.gen.yaml makes."""

from __future__ import annotations

import base64
import os
import struct
import subprocess
from dataclasses import dataclass, field

import httpx
from google.protobuf import struct_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from flowport.demo import BMI, CHAT
from flowport.v1 import runner_pb2
from tests.integration.client import Api
from tests.integration.npm import generate_typescript, npm_ci
from tests.integration.stack import REPO, Stack

WEB_EXAMPLE = REPO / "sdk" / "grpc" / "web"
# The first byte of a gRPC-Web frame: bit 7 set marks the trailers frame.
TRAILERS_FLAG = 0x80


@dataclass
class GrpcWebAnswer:
    http_status: int
    content_type: str
    messages: list[bytes] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)


def _frame(message: Message) -> bytes:
    payload = message.SerializeToString()
    return struct.pack(">BI", 0, len(payload)) + payload


def _decode_text(body: bytes) -> bytes:
    """grpc-web-text bodies are base64 per write, each padded: decode 4 characters at a time,
    as the grpc-web library does, since `=` may appear in the middle of the body."""
    text = body.replace(b"\r", b"").replace(b"\n", b"")
    return b"".join(base64.b64decode(text[i : i + 4]) for i in range(0, len(text), 4))


def call(
    stack: Stack, method: str, request: Message, *, text: bool, key: str | None
) -> GrpcWebAnswer:
    content_type = "application/grpc-web-text" if text else "application/grpc-web+proto"
    headers = {"content-type": content_type, "accept": content_type, "x-grpc-web": "1"}
    if key is not None:
        headers["x-api-key"] = key
    body = _frame(request)
    if text:
        body = base64.b64encode(body)
    # httpx speaks HTTP/1.1 unless told otherwise, as a browser's fetch to a plain-http origin does.
    response = httpx.post(
        f"{stack.base_url}/flowport.v1.WorkflowRunner/{method}",
        content=body,
        headers=headers,
        timeout=30,
    )
    assert response.http_version == "HTTP/1.1"
    data = _decode_text(response.content) if text else response.content
    answer = GrpcWebAnswer(response.status_code, response.headers["content-type"])
    offset = 0
    while offset < len(data):
        flags, length = struct.unpack(">BI", data[offset : offset + 5])
        payload = data[offset + 5 : offset + 5 + length]
        assert len(payload) == length, "a truncated frame"
        offset += 5 + length
        if flags & TRAILERS_FLAG:
            for line in payload.decode().split("\r\n"):
                if line:
                    name, _, value = line.partition(":")
                    answer.trailers[name.strip().lower()] = value.strip()
        else:
            answer.messages.append(payload)
    if not answer.trailers:
        # A trailers-only answer (an error before any message) carries them as HTTP headers;
        # browser libraries read them there.
        answer.trailers = {
            name: value for name, value in response.headers.items() if name.startswith("grpc-")
        }
    return answer


def _input(**values: object) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def test_run_over_grpc_web_binary(api: Api, stack: Stack) -> None:
    workflow_id = api.publish(BMI)
    request = runner_pb2.RunRequest(workflow_id=workflow_id, input=_input(height="1.8", weight=75))

    answer = call(stack, "Run", request, text=False, key=api.key)

    assert answer.http_status == 200
    assert answer.content_type == "application/grpc-web+proto"
    assert answer.trailers["grpc-status"] == "0"
    [payload] = answer.messages
    response = runner_pb2.RunResponse.FromString(payload)
    assert response.output == "您的BMI值是23.15"
    assert response.status == "succeeded"
    assert response.run_id.startswith("run_")


def test_run_stream_over_grpc_web_text(api: Api, stack: Stack, fake_llm) -> None:
    # Apart in time, so each token is an event of its own.
    fake_llm.set_reply(tokens=["嗯", ",在", "呢。"], delay_s=0.05)
    workflow_id = api.publish(CHAT)
    request = runner_pb2.RunStreamRequest(workflow_id=workflow_id, input=_input(输入="在吗?"))

    answer = call(stack, "RunStream", request, text=True, key=api.key)

    assert answer.http_status == 200
    assert answer.content_type.startswith("application/grpc-web-text")
    assert answer.trailers["grpc-status"] == "0"
    events = [runner_pb2.RunStreamResponse.FromString(m) for m in answer.messages]
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds[0] == "run_started"
    assert kinds[-1] == "output"
    assert "".join(e.token.content for e in events if e.HasField("token")) == "嗯,在呢。"
    assert events[-1].output.output == "嗯,在呢。"
    assert events[-1].output.run_id == events[0].run_started.run_id


def test_grpc_web_without_a_key_is_unauthenticated(stack: Stack, api: Api) -> None:
    workflow_id = api.publish(BMI)
    request = runner_pb2.RunRequest(workflow_id=workflow_id, input=_input(height=1.8, weight=75))

    for text in (False, True):
        answer = call(stack, "Run", request, text=text, key=None)

        assert answer.http_status == 200
        assert answer.messages == []
        assert answer.trailers["grpc-status"] == "16"
        assert answer.trailers["grpc-message"].startswith("missing API key")


def test_grpc_web_errors_carry_rich_details(stack: Stack, api: Api) -> None:
    workflow_id = api.publish(BMI)
    request = runner_pb2.RunRequest(workflow_id=workflow_id, input=_input(height=1.8))

    answer = call(stack, "Run", request, text=False, key=api.key)

    assert answer.trailers["grpc-status"] == "3"  # INVALID_ARGUMENT
    details = answer.trailers["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(base64.b64decode(details + "=" * (-len(details) % 4)))
    violations = error_details_pb2.BadRequest()
    assert any(d.Unpack(violations) for d in status.details)
    assert violations.field_violations[0].field == "input.weight"


def _connect_example(stack: Stack, key: str, workflow_id: str) -> list[str]:
    """sdk/grpc/web's browser code, on the stubs buf.gen.yaml makes, run by Node's fetch."""
    npm_ci(WEB_EXAMPLE)
    generate_typescript(WEB_EXAMPLE / "gen")
    subprocess.run(["npm", "run", "--silent", "build"], cwd=WEB_EXAMPLE, check=True, timeout=120)
    result = subprocess.run(
        ["node", "run.mjs"],
        cwd=WEB_EXAMPLE,
        env={
            **os.environ,
            "FLOWPORT_URL": stack.base_url,
            "FLOWPORT_KEY": key,
            "FLOWPORT_WORKFLOW": workflow_id,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_connect_grpc_web_client_runs_and_streams(stack: Stack, api: Api) -> None:
    lines = _connect_example(stack, api.key, api.publish(BMI))

    assert lines[0] == "Run: 您的BMI值是23.15 (succeeded)"
    assert lines[1] == "RunStream: runStarted start"
    assert lines[-1] == "RunStream: output 您的BMI值是23.15"
    assert [line.split()[1] for line in lines[2:-1]].count("nodeFinished") == 3


def test_connect_grpc_web_client_with_a_bad_key(stack: Stack, api: Api) -> None:
    lines = _connect_example(stack, "fp_" + "x" * 32, api.publish(BMI))

    assert lines == ["error: Unauthenticated: invalid API key"]


def test_grpc_web_body_over_the_limit_is_refused_by_envoy(stack: Stack, api: Api) -> None:
    # Over FLOWPORT_MAX_BODY_BYTES (1 MiB) as sent: Envoy's 413, before any gRPC; the libraries
    # report an HTTP status without gRPC trailers as UNKNOWN.
    request = runner_pb2.RunRequest(workflow_id="wf_any", input=_input(text="x" * 1_100_000))
    body = _frame(request)

    response = httpx.post(
        f"{stack.base_url}/flowport.v1.WorkflowRunner/Run",
        content=body,
        headers={"content-type": "application/grpc-web+proto", "x-api-key": api.key},
        timeout=30,
    )

    assert response.status_code == 413
    assert "grpc-status" not in response.headers
