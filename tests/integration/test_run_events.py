"""GET /v1/runs/{id}/events: a stream's frames as they were sent, numbered; a blocking run's
composed from its record as a stream of it would have sent them; bounded logs, expired
logs, and the refusals."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flowport.demo import BMI, CHAT
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api, sse_frames
from tests.integration.stack import Stack, wait_for

BMI_INPUT = {"height": 2, "weight": 80}
# Figures that differ from run to run: timings and ids.
VARYING = re.compile(r'"(time_spend|total_time)":[0-9.e+-]+|"run_id":"run_\w+"')


def _events(api: Api, run_id: str, *, after: int | None = None) -> list[tuple[int, str, str]]:
    with api.run_events(run_id, last_event_id=after) as source:
        assert source.response.status_code == 200, source.response.read()
        return [(int(sse.id), sse.event, sse.data) for sse in sse_frames(source)]


def _compact(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _steady(frames: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(event, VARYING.sub(r'"\1":_', data)) for event, data in frames]


def test_a_blocking_run_has_the_frames_a_stream_of_it_would_have_sent(api: Api) -> None:
    workflow_id = api.publish(BMI)
    streamed = api.stream_events(workflow_id, BMI_INPUT)
    run_id = api.run(workflow_id, BMI_INPUT).json()["run_id"]

    events = _events(api, run_id)

    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))
    composed = [(event, data) for _, event, data in events]
    assert _steady(composed) == _steady([(event, _compact(data)) for event, data in streamed])
    # After an id: the rest, numbered as before.
    assert _events(api, run_id, after=5) == events[5:]
    # After the last one: nothing more, and the stream ends.
    assert _events(api, run_id, after=len(events)) == []


def test_a_blocking_llm_run_is_followed_to_its_end_and_its_text_is_one_frame(
    api: Api, stack: Stack, fake_llm: FakeLlm
) -> None:
    fake_llm.set_reply(tokens=["在", "呢", "。"], reasoning=["想", "想"], pause_after=3)
    workflow_id = api.publish(CHAT)
    with ThreadPoolExecutor() as pool:
        blocking = pool.submit(api.run, workflow_id, {"输入": "在吗?"})
        assert fake_llm.wait_for_tokens(3)
        run_id = stack.running_run(workflow_id)
        # Followed while it runs: the frames come once it has ended.
        following = pool.submit(_events, api, run_id)
        fake_llm.release()
        assert blocking.result(10).status_code == 200
        events = following.result(10)

    kinds = [event for _, event, _ in events]
    assert kinds[-1] == "output"
    chunks = [json.loads(data) for _, event, data in events if event == "stream"]
    assert chunks == [
        {"Content": "", "Node": "1741675999864", "Reasoning": "想想"},
        {"Content": "在呢。", "Node": "1741675999864", "Reasoning": None},
    ]
    output = json.loads(events[-1][2])
    assert (output["output"], output["run_id"]) == ("在呢。", run_id)
    assert output["usage"]["completion_tokens"] > 0


def test_a_failed_blocking_run_ends_with_its_error_and_its_code(api: Api) -> None:
    start, calc, end = BMI["nodes"]
    definition = {**BMI, "nodes": [start, {**calc, "template": "{{ 1 / 0 }}"}, end]}
    workflow_id = api.publish(definition)
    answer = api.run(workflow_id, BMI_INPUT)
    assert answer.status_code == 500

    events = _events(api, answer.headers["x-run-id"])

    assert events[-1][1] == "error"
    assert json.loads(events[-1][2]) == {
        "Node": "calc",
        "code": 500,
        "message": answer.json()["message"],
    }


def test_another_accounts_run_and_a_bad_last_event_id_are_refused(api: Api, stack: Stack) -> None:
    run_id = api.run(api.publish(BMI), BMI_INPUT).json()["run_id"]
    _, other_key = stack.create_key()
    with Api(stack.base_url, other_key) as other:
        assert other.get(f"/v1/runs/{run_id}/events").status_code == 404
    refused = api.get(f"/v1/runs/{run_id}/events", headers={**api.headers, "Last-Event-ID": "x"})
    assert refused.status_code == 400
    assert "Last-Event-ID" in refused.json()["message"]
    assert api.get("/v1/runs/run_missing/events").status_code == 404


@pytest.fixture
def tight(tmp_path: Path, fake_llm_server: FakeLlm) -> Iterator[Stack]:
    """A stack whose runs' logs keep 600 bytes of token frames, and are dropped a second
    after they are written (its reaper looks every 0.3 s)."""
    stack = Stack(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'flowport.db'}",
        llm_base_url=fake_llm_server.base_url,
        extra_env={
            "FLOWPORT_RUN_LOG_MAX_BYTES": "600",
            "FLOWPORT_RUN_LOG_RETENTION_S": "1",
            "FLOWPORT_RUN_LEASE_S": "0.9",
        },
    )
    stack.start()
    yield stack
    stack.stop()


def test_a_long_streams_log_is_bounded_then_dropped_and_its_record_answers(
    tight: Stack, fake_llm: FakeLlm
) -> None:
    tokens = [f"t{n};" for n in range(40)]
    fake_llm.set_reply(tokens=tokens, delay_s=0.01)
    _, key = tight.create_key()
    with Api(tight.base_url, key) as api:
        workflow_id = api.publish(CHAT)
        with api.stream(workflow_id, {"输入": "hi"}) as source:
            run_id = source.response.headers["x-run-id"]
            sent = [(sse.event, sse.data) for sse in source.iter_sse()]

        logged = _events(api, run_id)
        # Every frame but the token frames past the bound; ids as the stream numbered them.
        assert [(e, d) for _, e, d in logged if e != "stream"] == [
            (e, d) for e, d in sent if e != "stream"
        ]
        assert 0 < sum(e == "stream" for _, e, _ in logged) < sum(e == "stream" for e, _ in sent)
        assert [seq for seq, _, _ in logged] == sorted({seq for seq, _, _ in logged})
        assert logged[-1][0] == len(sent)

        # Once the log has expired, the run's record answers: its text in one frame.
        def composed() -> list[tuple[int, str, str]] | None:
            events = _events(api, run_id)
            return events if len(events) < len(logged) else None

        events = wait_for(composed, timeout_s=10, what="the log to expire")
        text = "".join(json.loads(d)["Content"] for _, e, d in events if e == "stream")
        assert text == "".join(tokens)
        assert events[-1][1] == "output"
