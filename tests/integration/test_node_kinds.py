"""Every example of docs/nodes.md, published and run through the real stack, gives the output
the page documents; plus what the page says about skipped nodes, usage and the run record."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowport.engine.definition import NODE_TYPES
from tests.fakes.fake_http import FakeHttp
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api
from tests.integration.stack import REPO, Stack

DOCS = REPO / "docs" / "nodes.md"
EXAMPLES = REPO / "docs" / "examples"
# Where the http example's API lives in the docs; the test serves it locally.
DOCUMENTED_API = "https://api.example.com"
# The id the workflow example uses for the BMI example; the test publishes it first.
DOCUMENTED_BMI_ID = "wf_bmi_example"


def documented_runs() -> dict[str, dict[str, Any]]:
    """The ```json run blocks of docs/nodes.md, by example name."""
    blocks = re.findall(r"```json run\n(.*?)\n```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    runs = [json.loads(block) for block in blocks]
    return {run["example"]: run for run in runs}


def example(name: str) -> dict[str, Any]:
    definition: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text("utf-8"))
    return definition


@pytest.fixture(scope="module")
def fake_http() -> Iterator[FakeHttp]:
    with FakeHttp() as fake:
        yield fake


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake_llm_server: FakeLlm) -> Iterator[Stack]:
    """A stack of this module's own: its http nodes may reach the local API on 127.0.0.1."""
    data_dir: Path = tmp_path_factory.mktemp("node-kinds")
    stack = Stack(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'flowport.db'}",
        llm_base_url=fake_llm_server.base_url,
        extra_env={"FLOWPORT_FETCH_ALLOW": "127.0.0.1"},
    )
    stack.start()
    yield stack
    stack.stop()


def publish(api: Api, name: str, fake_http: FakeHttp) -> str:
    """Publishes the example as documented, pointing its references at this test's world."""
    text = (EXAMPLES / f"{name}.json").read_text("utf-8")
    text = text.replace(DOCUMENTED_API, fake_http.base_url)
    if DOCUMENTED_BMI_ID in text:
        text = text.replace(DOCUMENTED_BMI_ID, api.publish(example("template")))
    return api.publish(json.loads(text))


def test_every_node_kind_has_one_example_and_one_documented_run() -> None:
    files = {path.stem for path in EXAMPLES.glob("*.json")}
    assert files == set(NODE_TYPES)
    assert set(documented_runs()) == files


@pytest.mark.parametrize("name", sorted(documented_runs()))
def test_documented_example_gives_its_documented_output(
    name: str, api: Api, fake_llm: FakeLlm, fake_http: FakeHttp
) -> None:
    run = documented_runs()[name]
    if "llm" in run:
        fake_llm.set_reply(run["llm"])
    workflow_id = publish(api, name, fake_http)

    answer = api.run(workflow_id, run["input"])

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["output"] == run["output"]
    # Usage is reported exactly when the run called an LLM.
    assert ("usage" in body) == ("llm" in run)


def test_condition_stream_reports_skipped_nodes_as_documented(
    api: Api, fake_http: FakeHttp
) -> None:
    workflow_id = publish(api, "condition", fake_http)

    frames = api.stream_events(workflow_id, {"age": 15})

    messages = [data for event, data in frames if event == "msg"]
    skipped = [m for m in messages if m["Data"] and m["Data"].get("status") == "skipped"]
    assert skipped == [
        {
            "Node": node,
            "Msg": f"Skip node {node}, type template",
            "Type": "finish_node",
            "Data": {"time_spend": 0, "status": "skipped"},
        }
        for node in ("adult_price", "child_price")
    ]
    started = [m["Node"] for m in messages if m["Type"] == "start_node"]
    assert started == ["start", "group", "teen_price", "end"]
    event, output = frames[-1]
    assert event == "output" and output["output"] == "teen ticket: 8 EUR"
    assert "usage" not in output


def test_the_run_record_shows_skips_and_usage_per_node(
    api: Api, fake_llm: FakeLlm, fake_http: FakeHttp
) -> None:
    condition = publish(api, "condition", fake_http)
    run_id = api.run(condition, {"age": 40}).json()["run_id"]
    nodes = {n["node_id"]: n for n in api.get(f"/v1/runs/{run_id}").json()["nodes"]}
    assert {n: nodes[n]["status"] for n in ("adult_price", "teen_price", "child_price")} == {
        "adult_price": "succeeded",
        "teen_price": "skipped",
        "child_price": "skipped",
    }

    fake_llm.set_reply(["Four", "."])
    llm = publish(api, "llm", fake_http)
    answer = api.run(llm, {"question": "What is 2+2?"}).json()
    node = next(
        n
        for n in api.get(f"/v1/runs/{answer['run_id']}").json()["nodes"]
        if n["node_id"] == "answer"
    )
    usage = node["output"]["usage"]
    assert usage["model"] == "fake-model"
    assert usage["completion_tokens"] == 2 and usage["reasoning_tokens"] == 0
    assert answer["usage"] == {
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": 2,
        "reasoning_tokens": 0,
        "total_tokens": usage["prompt_tokens"] + 2,
    }


def test_a_workflow_node_cannot_run_another_accounts_workflow(
    api: Api, stack: Stack, fake_http: FakeHttp
) -> None:
    _, other_key = stack.create_key()
    with Api(stack.base_url, other_key) as other:
        theirs = other.publish(example("template"))
    text = (EXAMPLES / "workflow.json").read_text("utf-8").replace(DOCUMENTED_BMI_ID, theirs)
    workflow_id = api.publish(json.loads(text))

    answer = api.run(workflow_id, {"height_cm": 180, "weight_kg": 75})

    assert answer.status_code == 404, answer.text
    assert answer.json()["message"] == f"node bmi: workflow {theirs} not found"


def test_a_run_past_its_timeout_is_a_504(api: Api, fake_llm: FakeLlm) -> None:
    definition = {**example("llm"), "timeout_s": 0.5}
    workflow_id = api.publish(definition)
    fake_llm.set_reply(["never", "finished"], pause_after=1)  # the model stalls

    answer = api.run(workflow_id, {"question": "?"})

    assert answer.status_code == 504, answer.text
    assert answer.json() == {"code": 504, "message": "the run exceeded its timeout of 0.5 s"}
    # The stalled call was closed, not left running.
    assert fake_llm.wait_for_disconnect(5.0)
