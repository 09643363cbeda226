"""/metrics on the metrics port (never the public one): the figures of runs, nodes, tokens,
rate limits, webhooks and gRPC calls after the calls that make them, and with
`--workers 2` the sum of both workers'."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from flowport.demo import BMI, CHAT
from tests.fakes.fake_http import FakeHttp
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api
from tests.integration.stack import Stack, wait_for

BMI_INPUT = {"height": 2, "weight": 80}

Samples = list[tuple[str, dict[str, str], float]]


def scrape(stack: Stack) -> Samples:
    response = httpx.get(stack.metrics_url, timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(
        figure
        for sample, sample_labels, figure in samples
        if sample == name and labels.items() <= sample_labels.items()
    )


def test_runs_tokens_limits_and_calls_are_counted(
    api: Api, stack: Stack, fake_llm: FakeLlm
) -> None:
    before = scrape(stack)
    bmi = api.publish(BMI)
    chat = api.publish(CHAT)
    for _ in range(2):
        assert api.run(bmi, BMI_INPUT).status_code == 200
    fake_llm.set_reply(tokens=["在", "呢"], reasoning=["想"])
    frames = api.stream_events(chat, {"输入": "在吗?"})
    assert frames[-1][0] == "output"
    (call,) = fake_llm.requests
    prompt_tokens = sum(len(str(m["content"])) for m in call["messages"])
    fake_llm.set_reply(tokens=None, status=400)
    assert api.run(chat, {"输入": "在吗?"}).status_code >= 400
    assert api.get("/v1/runs/run_nosuchrunatall00000").status_code == 404
    after = scrape(stack)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Runs by workflow, mode and outcome; a fresh workflow's figures are its own.
    assert value(after, "flowport_runs_started_total", workflow_id=bmi, mode="blocking") == 2
    assert value(after, "flowport_runs_ended_total", workflow_id=bmi, status="succeeded") == 2
    assert value(after, "flowport_run_duration_seconds_count", workflow_id=bmi) == 2
    assert value(after, "flowport_run_duration_seconds_sum", workflow_id=bmi) > 0
    assert value(after, "flowport_runs_started_total", workflow_id=chat, mode="stream") == 1
    assert value(after, "flowport_runs_started_total", workflow_id=chat, mode="blocking") == 1
    assert value(after, "flowport_runs_ended_total", workflow_id=chat, status="succeeded") == 1
    assert value(after, "flowport_runs_ended_total", workflow_id=chat, status="failed") == 1
    # Nodes by kind: BMI has a template node, Chat an llm node that once failed.
    assert grew("flowport_node_duration_seconds_count", node_type="template") == 2
    assert grew("flowport_node_duration_seconds_count", node_type="llm", status="succeeded") == 1
    assert grew("flowport_node_duration_seconds_count", node_type="llm", status="failed") == 1
    # Tokens as the provider counted them, by model and kind.
    assert grew("flowport_llm_tokens_total", model="fake-model", kind="prompt") == prompt_tokens
    assert grew("flowport_llm_tokens_total", model="fake-model", kind="completion") == 3
    assert grew("flowport_llm_tokens_total", model="fake-model", kind="reasoning") == 1
    # gRPC calls with their codes: FlowAI's route answers its errors in its body, OK.
    flowai = {"grpc_service": "flowport.v1.FlowAi", "grpc_method": "RunWorkflow"}
    assert grew("grpc_server_started_total", **flowai, grpc_type="server_stream") == 4
    assert grew("grpc_server_handled_total", **flowai, grpc_code="OK") == 4
    assert grew("grpc_server_handling_seconds_count", **flowai) == 4
    get_run = {"grpc_service": "flowport.v1.Runs", "grpc_method": "GetRun", "grpc_type": "unary"}
    assert grew("grpc_server_handled_total", **get_run, grpc_code="NOT_FOUND") == 1
    # No run ids or keys among the labels.
    labels = {v for _, sample_labels, _ in after for v in sample_labels.values()}
    assert not [v for v in labels if v.startswith(("run_", "fp_"))]


def test_rate_limited_calls_are_counted(api: Api, stack: Stack) -> None:
    bmi = api.publish(BMI)
    body = {"app_code": bmi, "args": BMI_INPUT}
    before = value(scrape(stack), "flowport_rate_limited_calls_total")
    results: list[int] = []

    def call() -> None:
        for _ in range(10):
            results.append(api.linkai(body).status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    limited = results.count(429)
    assert limited > 0, results
    assert value(scrape(stack), "flowport_rate_limited_calls_total") - before == limited


def test_webhook_deliveries_are_counted_by_outcome(
    api: Api, stack: Stack, fake_http: FakeHttp
) -> None:
    assert api.post("/v1/webhooks:rotateSecret", {}).status_code == 200
    bmi = api.publish(BMI)
    before = scrape(stack)
    api.run(bmi, BMI_INPUT, webhook_url=fake_http.url("/hook/metrics"))
    api.run(bmi, BMI_INPUT, webhook_url=fake_http.url("/status/500"))

    def grown() -> Samples | None:
        now = scrape(stack)
        delivered = value(now, "flowport_webhook_deliveries_total", outcome="delivered")
        failed = value(now, "flowport_webhook_deliveries_total", outcome="failed")
        done = delivered > value(before, "flowport_webhook_deliveries_total", outcome="delivered")
        retried = failed > value(before, "flowport_webhook_deliveries_total", outcome="failed")
        return now if done and retried else None

    wait_for(grown, timeout_s=20, what="a delivered and a failed webhook attempt")


def test_metrics_are_not_on_the_public_port(stack: Stack) -> None:
    for path in ("/metrics", "/metrics/", "/stats/prometheus"):
        response = httpx.get(f"{stack.base_url}{path}", timeout=5)
        assert response.status_code == 404, path
        assert "flowport_runs" not in response.text and "# TYPE" not in response.text


@pytest.fixture
def two_workers(tmp_path: Path, fake_llm_server: FakeLlm) -> Iterator[Stack]:
    stack = Stack(
        data_dir=tmp_path / "stack",
        database_url=f"sqlite:///{tmp_path / 'flowport.db'}",
        llm_base_url=fake_llm_server.base_url,
        workers=2,
        extra_env={"FLOWPORT_RATE_LIMIT_PER_KEY": "1000"},
    )
    stack.start()
    yield stack
    stack.stop()


def _requests_per_worker(stack: Stack) -> dict[str, int]:
    """Envoy's count of requests sent to each service process (its admin /clusters page)."""
    page = httpx.get(f"http://127.0.0.1:{stack.admin_port}/clusters", timeout=5).text
    counts = re.findall(r"^flowport_grpc::([\d.]+:\d+)::rq_total::(\d+)$", page, re.MULTILINE)
    return {address: int(total) for address, total in counts}


def test_with_two_workers_both_workers_runs_are_counted(
    two_workers: Stack, fake_llm: FakeLlm
) -> None:
    _, key = two_workers.create_key()
    with Api(two_workers.base_url, key) as api:
        bmi = api.publish(BMI)
        chat = api.publish(CHAT)
        for _ in range(10):
            assert api.run(bmi, BMI_INPUT).status_code == 200
        counts = _requests_per_worker(two_workers)
        # Both took runs: a figure from one of them alone would be short of 10.
        assert len(counts) == 2 and all(count > 0 for count in counts.values()), counts
        # Each worker brings its files up to date every second.
        samples = settled(
            two_workers,
            lambda s: value(s, "flowport_runs_ended_total", workflow_id=bmi) == 10,
        )
        assert value(samples, "flowport_runs_started_total", workflow_id=bmi) == 10
        assert value(samples, "grpc_server_handled_total", grpc_method="RunWorkflow") == 10
        assert value(samples, "flowport_active_runs") == 0

        # A stream held mid-answer is an active run and an open stream, until it ends.
        fake_llm.set_reply(tokens=["a", "b", "c"], pause_after=1)
        streamed: list[list[tuple[str, object]]] = []
        reader = threading.Thread(
            target=lambda: streamed.append(api.stream_events(chat, {"输入": "hi"}))
        )
        reader.start()
        try:
            assert fake_llm.wait_for_tokens(1)
            held = settled(two_workers, lambda s: value(s, "flowport_active_runs") == 1)
            assert value(held, "flowport_open_streams", grpc_method="RunWorkflow") == 1
        finally:
            fake_llm.release()
            reader.join(timeout=30)
        assert streamed and streamed[0][-1][0] == "output"
        ended = settled(two_workers, lambda s: value(s, "flowport_active_runs") == 0)
        assert value(ended, "flowport_open_streams") == 0
        assert value(ended, "flowport_runs_ended_total", workflow_id=chat, status="succeeded") == 1


def settled(stack: Stack, condition: Callable[[Samples], bool]) -> Samples:
    """The first scrape that meets `condition`."""

    def scraped() -> Samples | None:
        samples = scrape(stack)
        return samples if condition(samples) else None

    return wait_for(scraped, timeout_s=10, what="the workers' figures")
