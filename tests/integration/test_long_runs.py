"""Runs longer than Envoy's default 15 s route timeout are neither cut nor answered 504."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from flowport.demo import CHAT
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api


def test_an_18_second_stream_and_blocking_run_reach_their_end(api: Api, fake_llm: FakeLlm) -> None:
    # Five tokens with 4.5 s between them: each run lasts 18 s, past the default timeout.
    fake_llm.set_reply(tokens=["slow ", "and ", "steady ", "wins", "!"], delay_s=4.5)
    workflow_id = api.publish(CHAT)

    with ThreadPoolExecutor(max_workers=1) as pool:
        blocking = pool.submit(api.run, workflow_id, {"输入": "go"})
        with api.stream(workflow_id, {"输入": "go"}) as source:
            frames = [(sse.event, json.loads(sse.data)) for sse in source.iter_sse()]
        answer = blocking.result(timeout=60)

    assert frames[-1][0] == "output"
    assert frames[-1][1]["output"] == "slow and steady wins!"
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"] == "slow and steady wins!"
