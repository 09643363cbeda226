"""FlowAI's route with "stream": true: frames as documented, sent as they happen."""

from __future__ import annotations

import json
import time

from flowport.demo import BMI, CHAT
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api, sse_frames
from tests.integration.conftest import RESUME_S


def test_frames_match_flowai_documentation(api: Api, fake_llm: FakeLlm) -> None:
    # Written apart in time, each token is a frame of its own, as in FlowAI's example
    # (tokens that queue up together go joined in one frame).
    fake_llm.set_reply(tokens=["嗯", ",", "在", "呢", "。"], delay_s=0.05)
    workflow_id = api.publish(CHAT)

    frames = api.stream_events(workflow_id, {"输入": "在吗?"})

    llm, out = "1741675999864", "1741676038250"
    assert frames[0] == (
        "msg",
        {"Node": "myinput", "Msg": "start", "Type": "start", "Data": {"输入": "在吗?"}},
    )
    assert frames[1] == (
        "msg",
        {"Node": "myinput", "Msg": "Start node 开始, type in", "Type": "start_node", "Data": None},
    )
    event, finish = frames[2]
    assert (event, finish["Msg"], finish["Type"]) == (
        "msg",
        "Finish node 开始, type in",
        "finish_node",
    )
    assert list(finish["Data"]) == ["time_spend"]
    assert frames[3] == (
        "msg",
        {"Node": llm, "Msg": "Start node LLM1, type llm", "Type": "start_node", "Data": None},
    )
    assert frames[4:9] == [
        ("stream", {"Content": token, "Node": llm, "Reasoning": None}) for token in "嗯,在呢。"
    ]
    assert frames[9][1]["Msg"] == "Finish node LLM1, type llm"
    assert frames[10][1] == {
        "Node": out,
        "Msg": "Start node 结束(输出)1, type out",
        "Type": "start_node",
        "Data": None,
    }
    assert (frames[11][1]["Node"], frames[11][1]["Msg"]) == (
        out,
        "Finish node 结束(输出)1, type out",
    )
    event, output = frames[12]
    assert event == "output"
    # FlowAI's documented fields first; Flowport's `usage` (issue 4) may follow them.
    assert list(output)[:3] == ["output", "total_time", "run_id"]
    assert output["output"] == "嗯,在呢。"
    assert len(frames) == 13


def test_stream_bytes_and_headers(api: Api, fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(tokens=["在"])
    workflow_id = api.publish(CHAT)
    body = {"input": {"输入": "在吗?"}, "stream": True}

    response = api.post(f"/v1/api/workflow/run/{workflow_id}", body)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.content.startswith(
        'event: msg\ndata: {"Node":"myinput","Msg":"start","Type":"start","Data":{"输入":"在吗?"}}\n\n'.encode()
    )
    assert (
        b'event: stream\ndata: {"Content":"\xe5\x9c\xa8","Node":"1741675999864","Reasoning":null}\n\n'
        in response.content
    )


def test_tokens_reach_the_client_before_the_llm_finishes(api: Api, fake_llm: FakeLlm) -> None:
    # The fake sends two tokens, then holds the rest until released: if Flowport or Envoy
    # buffered, the client would see nothing until the end.
    fake_llm.set_reply(tokens=["one ", "two ", "three"], pause_after=2)
    workflow_id = api.publish(CHAT)
    seen: list[str] = []

    with api.stream(workflow_id, {"输入": "count"}) as source:
        for sse in source.iter_sse():
            if sse.event == "stream":
                seen.append(json.loads(sse.data)["Content"])
                if "".join(seen) == "one two ":
                    # Two tokens arrived while the LLM is provably still answering.
                    assert len(fake_llm.token_times) == 2
                    fake_llm.release()
            if sse.event == "output":
                assert json.loads(sse.data)["output"] == "one two three"

    assert "".join(seen) == "one two three"


def test_reasoning_is_streamed_apart_from_content(api: Api, fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(tokens=["42"], reasoning=["let me ", "think"])
    workflow_id = api.publish(CHAT)

    frames = api.stream_events(workflow_id, {"输入": "answer?"})

    streamed = [(d["Content"], d["Reasoning"]) for event, d in frames if event == "stream"]
    # Reasoning frames first (Content ""), then the answer's (Reasoning null); chunks that
    # arrived together may share a frame, never across the two kinds.
    thinking = [reasoning for content, reasoning in streamed if reasoning is not None]
    assert streamed == [("", r) for r in thinking] + [("42", None)]
    assert "".join(thinking) == "let me think"
    assert frames[-1][1]["output"] == "42"


def test_llm_failure_mid_stream_is_an_error_frame(api: Api, fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(tokens=[], status=500)
    workflow_id = api.publish(CHAT)

    frames = api.stream_events(workflow_id, {"输入": "hello"})

    event, error = frames[-1]
    assert event == "error"
    assert error["Node"] == "1741675999864"
    assert error["code"] == 502
    assert "LLM provider failed" in error["message"]


def test_errors_before_the_stream_are_plain_http(api: Api) -> None:
    workflow_id = api.publish(BMI)

    with api.stream(workflow_id, {"height": 1.8}) as source:
        assert source.response.status_code == 400
        assert source.response.headers["content-type"] == "application/json"
        assert "weight" in json.loads(source.response.read())["message"]


def test_a_run_whose_client_left_stops_when_nobody_follows_it(api: Api, fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(tokens=["a", "b", "c"], pause_after=1)
    workflow_id = api.publish(CHAT)

    with api.stream(workflow_id, {"输入": "hi"}) as source:
        run_id = source.response.headers["x-run-id"]
        for sse in source.iter_sse():
            if sse.event == "stream":
                left = time.monotonic()
                break  # leaving the block closes the connection mid-answer

    # The run waits FLOWPORT_STREAM_RESUME_S for its client to come back; nobody came, so
    # the upstream LLM stream is closed...
    assert fake_llm.wait_for_disconnect(timeout=RESUME_S + 5)
    assert time.monotonic() - left >= RESUME_S * 0.9
    # ...and the run is on record as cancelled, with the node that had finished.
    run = _wait_until_finished(api, run_id)
    assert run["status"] == "cancelled"
    assert run["error"] == "the run was cancelled: its client went away and nobody followed it"
    assert [node["node_id"] for node in run["nodes"]][:1] == ["myinput"]


def test_a_client_that_lost_its_stream_resumes_from_its_run_id(api: Api, fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(tokens=["a", "b", "c", "d"], pause_after=2)
    workflow_id = api.publish(CHAT)

    with api.stream(workflow_id, {"输入": "hi"}) as source:
        run_id = source.response.headers["x-run-id"]
        seen = []
        for sse in source.iter_sse():
            seen.append((sse.event, sse.data))
            if sse.event == "stream":
                break  # the connection drops mid-answer

    # Back within FLOWPORT_STREAM_RESUME_S, after the frames it had: the n-th frame has id n.
    with api.run_events(run_id, last_event_id=len(seen)) as events:
        fake_llm.release()
        rest = [(sse.id, sse.event, sse.data) for sse in sse_frames(events)]

    assert [int(seq) for seq, _, _ in rest] == list(range(len(seen) + 1, len(seen) + 1 + len(rest)))
    frames = seen + [(event, data) for _, event, data in rest]
    text = "".join(json.loads(data)["Content"] for event, data in frames if event == "stream")
    assert text == "abcd"
    assert frames[-1][0] == "output"
    assert json.loads(frames[-1][1])["output"] == "abcd"
    assert _wait_until_finished(api, run_id)["status"] == "succeeded"


def test_run_id_header_names_the_run(api: Api) -> None:
    workflow_id = api.publish(BMI)

    response = api.run(workflow_id, {"height": 2, "weight": 80})

    assert response.headers["x-run-id"] == response.json()["run_id"]


def _wait_until_finished(api: Api, run_id: str, timeout_s: float = 10) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        run = api.get(f"/v1/runs/{run_id}").json()
        if run["status"] != "running" or time.monotonic() > deadline:
            return run
        time.sleep(0.05)
