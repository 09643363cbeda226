"""FlowAI's wire format: request parsing and the exact bytes of each frame."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flowport import flowai
from flowport.engine import NodeFinished, NodeStarted, RunFailed, RunStarted, RunSucceeded, Token
from flowport.errors import InvalidArgument, UpstreamFailed


def test_frames_are_byte_for_byte_flowai() -> None:
    started = RunStarted(
        run_id="run_1", node_id="myinput", inputs={"输入": "在吗?"}, session_id="s"
    )
    assert (
        flowai.render_event(started)
        == (
            'event: msg\ndata: {"Node":"myinput","Msg":"start","Type":"start","Data":{"输入":"在吗?"}}\n\n'
        ).encode()
    )

    node = NodeStarted(node_id="myinput", name="开始", type="in")
    assert (
        flowai.render_event(node)
        == (
            'event: msg\ndata: {"Node":"myinput","Msg":"Start node 开始, type in","Type":"start_node","Data":null}\n\n'
        ).encode()
    )

    finished = NodeFinished(
        node_id="myinput",
        name="开始",
        type="in",
        status="succeeded",
        started_at=datetime.now(UTC),
        time_spend=0.000125251,
        inputs=None,
        output={},
        error=None,
    )
    assert (
        flowai.render_event(finished)
        == (
            'event: msg\ndata: {"Node":"myinput","Msg":"Finish node 开始, type in","Type":"finish_node","Data":{"time_spend":0.000125251}}\n\n'
        ).encode()
    )

    token = Token(node_id="1741675999864", content="嗯", reasoning=None)
    assert (
        flowai.render_event(token)
        == (
            'event: stream\ndata: {"Content":"嗯","Node":"1741675999864","Reasoning":null}\n\n'
        ).encode()
    )

    done = RunSucceeded(run_id="run_1", output="嗯,在呢。", total_time=4.758748069)
    assert (
        flowai.render_event(done)
        == (
            'event: output\ndata: {"output":"嗯,在呢。","total_time":4.758748069,"run_id":"run_1"}\n\n'
        ).encode()
    )


def test_error_frame_names_node_and_status() -> None:
    failed = RunFailed(
        run_id="run_1", node_id="llm1", error=UpstreamFailed("LLM provider failed"), total_time=1.0
    )
    assert flowai.render_event(failed) == (
        b'event: error\ndata: {"Node":"llm1","code":502,"message":"LLM provider failed"}\n\n'
    )


def test_failed_node_has_no_finish_frame() -> None:
    failed = NodeFinished(
        node_id="x",
        name="x",
        type="llm",
        status="failed",
        started_at=datetime.now(UTC),
        time_spend=1.0,
        inputs=None,
        output=None,
        error="boom",
    )
    assert flowai.render_event(failed) is None


def test_request_defaults_and_fields() -> None:
    assert flowai.parse_request(b"") == flowai.FlowAiRequest()
    parsed = flowai.parse_request(b'{"input": {"a": 12345678901234567890}, "stream": true}')
    # Big integers stay exact: the body is read as raw bytes, not through a Struct.
    assert parsed.input == {"a": 12345678901234567890}
    assert parsed.stream is True


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "body: not valid JSON"),
        (b"\xff", "body: not valid UTF-8"),
        (b"null", "body: must be a JSON object"),
        (b'{"input": 1}', "input: must be a JSON object"),
        (b'{"stream": 1}', "stream: must be true or false"),
        (b'{"stream": "true"}', "stream: must be true or false"),
        (b'{"inputs": {}}', "inputs: unknown field"),
        (b'{"session_id": 5}', "session_id: must be a string"),
        (b"[" * 100_000 + b"]" * 100_000, "body: nested deeper than"),
    ],
)
def test_bad_requests_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        flowai.parse_request(body)
    assert raised.value.message.startswith(message)


def test_skipped_node_is_a_finish_node_frame_saying_so() -> None:
    skipped = NodeFinished(
        node_id="teen",
        name="少年",
        type="template",
        status="skipped",
        started_at=datetime.now(UTC),
        time_spend=0.0,
        inputs=None,
        output=None,
        error=None,
    )
    assert (
        flowai.render_event(skipped)
        == (
            'event: msg\ndata: {"Node":"teen","Msg":"Skip node 少年, type template","Type":"finish_node","Data":{"time_spend":0,"status":"skipped"}}\n\n'
        ).encode()
    )


def test_a_node_that_failed_and_continued_finishes_like_any_other() -> None:
    continued = NodeFinished(
        node_id="api",
        name="API",
        type="http",
        status="failed",
        started_at=datetime.now(UTC),
        time_spend=0.5,
        inputs=None,
        output={"output": "n/a", "error": "node api: timed out"},
        error="node api: timed out",
    )
    assert flowai.render_event(continued) == (
        b'event: msg\ndata: {"Node":"api","Msg":"Finish node API, type http","Type":"finish_node","Data":{"time_spend":0.5}}\n\n'
    )


def test_usage_follows_the_documented_output_fields() -> None:
    done = RunSucceeded(
        run_id="run_1",
        output="ok",
        total_time=1.5,
        usage={
            "prompt_tokens": 9,
            "completion_tokens": 4,
            "reasoning_tokens": 1,
            "total_tokens": 13,
        },
    )
    assert flowai.render_event(done) == (
        b'event: output\ndata: {"output":"ok","total_time":1.5,"run_id":"run_1",'
        b'"usage":{"prompt_tokens":9,"completion_tokens":4,"reasoning_tokens":1,"total_tokens":13}}\n\n'
    )
    assert list(flowai.output_payload(done)) == ["output", "total_time", "run_id", "usage"]
