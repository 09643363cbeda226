"""The content policy against its known tricks (invisible characters, fullwidth letters, case,
soft hyphens) on every run surface: FlowAI's and LinkAI's routes, blocking and streamed, and
gRPC directly and through Envoy; in inputs, fetched files and the LLM's streamed output."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import grpc
import pytest
from google.protobuf import struct_pb2

from flowport.demo import CHAT
from flowport.policy import fold
from flowport.v1 import runner_pb2, runner_pb2_grpc
from tests.fakes.fake_http import FakeHttp
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api, linkai_failure
from tests.integration.stack import Stack
from tests.integration.test_url_inputs import FILE_WORKFLOW

# The session stack's policy holds `forbiddenword` and `炸弹` (conftest.BLOCKED_WORDS).
INPUT_TRICKS = {
    "upper case": "FORBIDDENWORD",
    "zero-width space": "for\u200bbiddenword",
    "fullwidth": "ｆｏｒｂｉｄｄｅｎｗｏｒｄ",
    "soft hyphen": "forb\u00adiddenword",
    "zero-width space in Chinese": "炸\u200b弹",
}
# The same tricks split over the LLM's token chunks.
OUTPUT_TRICKS = {
    "upper case": ["ok ", "FORBIDDEN", "WORD", " more"],
    "zero-width space": ["ok for", "\u200b", "bidden", "word", " more"],
    "fullwidth": ["ok ｆｏｒｂｉｄ", "ｄｅｎｗｏｒｄ", " more"],
    "soft hyphen": ["ok forb\u00ad", "iddenword", " more"],
    "zero-width space in Chinese": ["好", "炸\u200b", "弹", "了"],
}
SURFACES = ["flowai", "flowai-stream", "linkai", "grpc-direct", "grpc-envoy", "grpc-stream"]
WORDS = ("forbiddenword", "炸弹")


def _clean(text: str) -> bool:
    return not any(word in fold(text) for word in WORDS)


@pytest.fixture
def chat(api: Api) -> str:
    return api.publish(CHAT)


def _struct(**values: object) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


@pytest.fixture
def runner(surface: str, stack: Stack) -> Iterator[runner_pb2_grpc.WorkflowRunnerStub]:
    """A gRPC client of the surface's way in: the service itself, or Envoy's port."""
    target = stack.envoy_target if surface == "grpc-envoy" else stack.grpc_target
    with grpc.insecure_channel(target) as channel:
        yield runner_pb2_grpc.WorkflowRunnerStub(channel)


def _blocked_everywhere(
    surface: str, api: Api, workflow_id: str, text: str, runner: runner_pb2_grpc.WorkflowRunnerStub
) -> str:
    """Runs the workflow with `text` as its input on `surface`; asserts the 409 (or ABORTED,
    or the stream's 409 error frame) and returns everything the client was shown."""
    metadata = [("x-api-key", api.key)]
    match surface:
        case "flowai":
            response = api.run(workflow_id, {"输入": text})
            assert response.status_code == 409, response.text
            return response.text
        case "flowai-stream":
            with api.stream(workflow_id, {"输入": text}) as source:
                if source.response.status_code == 409:
                    return source.response.read().decode()
                assert source.response.status_code == 200
                frames = [(sse.event, sse.json()) for sse in source.iter_sse()]
            assert frames[-1][0] == "error" and frames[-1][1]["code"] == 409, frames
            return "".join(str(data) for _, data in frames)
        case "linkai":
            response = api.linkai({"app_code": workflow_id, "args": {"输入": text}})
            linkai_failure(response, 409)
            return response.text
        case "grpc-direct" | "grpc-envoy":
            with pytest.raises(grpc.RpcError) as raised:
                runner.Run(
                    runner_pb2.RunRequest(workflow_id=workflow_id, input=_struct(输入=text)),
                    metadata=metadata,
                )
            assert raised.value.code() == grpc.StatusCode.ABORTED
            return raised.value.details() or ""
        case "grpc-stream":
            request = runner_pb2.RunStreamRequest(workflow_id=workflow_id, input=_struct(输入=text))
            try:
                events = list(runner.RunStream(request, metadata=metadata))
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.ABORTED
                return error.details() or ""
            assert events[-1].WhichOneof("event") == "error", events
            assert events[-1].error.code == 409
            return "".join(e.token.content for e in events if e.HasField("token"))
    raise AssertionError(surface)


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("trick", list(INPUT_TRICKS))
def test_a_disguised_word_in_the_input_is_409(
    surface: str,
    trick: str,
    api: Api,
    chat: str,
    runner: runner_pb2_grpc.WorkflowRunnerStub,
    fake_llm: FakeLlm,
) -> None:
    shown = _blocked_everywhere(surface, api, chat, f"please say {INPUT_TRICKS[trick]}", runner)

    assert "blocked by the content policy" in shown
    # The LLM never heard it.
    assert fake_llm.requests == []


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("trick", list(OUTPUT_TRICKS))
def test_a_disguised_word_split_across_tokens_never_reaches_the_client_whole(
    surface: str,
    trick: str,
    api: Api,
    chat: str,
    runner: runner_pb2_grpc.WorkflowRunnerStub,
    fake_llm: FakeLlm,
) -> None:
    fake_llm.set_reply(tokens=OUTPUT_TRICKS[trick])

    shown = _blocked_everywhere(surface, api, chat, "hello", runner)

    assert _clean(shown), shown
    assert "blocked by the content policy" in shown or surface == "grpc-stream"


@pytest.mark.parametrize("trick", list(INPUT_TRICKS))
def test_a_fetched_file_holding_a_disguised_word_is_409(
    trick: str, api: Api, fake_http: FakeHttp
) -> None:
    workflow_id = api.publish(FILE_WORKFLOW)
    url = fake_http.url("/say?text=" + quote(f"a file that says {INPUT_TRICKS[trick]}"))

    flowai = api.run(workflow_id, {"doc": url})
    linkai = api.linkai({"app_code": workflow_id, "args": {"input_file": url}})

    assert flowai.status_code == 409, flowai.text
    assert flowai.json()["message"] == "input.doc: blocked by the content policy"
    assert linkai_failure(linkai, 409) == "input.doc: blocked by the content policy"


def test_a_disguised_word_in_the_streamed_reasoning_is_stopped_too(
    api: Api, chat: str, fake_llm: FakeLlm
) -> None:
    fake_llm.set_reply(tokens=["fine"], reasoning=["let me say ｆｏｒｂｉｄ", "\u200bdenword", "!"])

    frames = api.stream_events(chat, {"输入": "hi"})

    reasoning = "".join(data.get("Reasoning") or "" for event, data in frames if event == "stream")
    assert _clean(reasoning), reasoning
    assert frames[-1][0] == "error" and frames[-1][1]["code"] == 409
