"""flowport.client, sync and async, against the real stack: every call it wraps, typed
events, a stream resumed after its connection was cut, background runs waited for, and
retries that meet real 429s and closed ports but never run a workflow twice."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy

from flowport.client import (
    AsyncClient,
    Chunk,
    Client,
    FlowportError,
    NodeFinished,
    NodeStarted,
    Output,
    RetryPolicy,
    RunFailed,
    RunStarted,
)
from flowport.demo import BMI, CHAT
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api
from tests.integration.stack import REPO, Stack, free_port, wait_for

BMI_INPUT = {"height": 1.8, "weight": 75}
BMI_OUTPUT = "您的BMI值是23.15"
# Retries within the test's patience; the policy's shape is what is tested, not its figures.
QUICK = RetryPolicy(max_attempts=4, backoff_s=0.05, max_backoff_s=0.2)


class Wire:
    """httpx event hooks that record what went over the wire: each answer's status, and
    the socket of each connection opened (through httpcore's `trace` extension), so a test
    can cut a connection as a network failure would."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests = 0
        # (path, Last-Event-ID) of every request sent.
        self.sent: list[tuple[str, str | None]] = []
        self.sockets: list[socket.socket] = []

    def hooks(self) -> dict[str, list[Any]]:
        return {"request": [self._request], "response": [self._response]}

    def async_hooks(self) -> dict[str, list[Any]]:
        async def request(request: httpx.Request) -> None:
            self.requests += 1
            self.sent.append((request.url.path, request.headers.get("last-event-id")))

            async def trace(name: str, info: dict[str, Any]) -> None:
                self._trace(name, info)

            request.extensions["trace"] = trace

        async def response(response: httpx.Response) -> None:
            self._response(response)

        return {"request": [request], "response": [response]}

    def _request(self, request: httpx.Request) -> None:
        self.requests += 1
        self.sent.append((request.url.path, request.headers.get("last-event-id")))
        request.extensions["trace"] = self._trace

    def _response(self, response: httpx.Response) -> None:
        self.statuses.append(response.status_code)

    def _trace(self, name: str, info: dict[str, Any]) -> None:
        if name == "connection.connect_tcp.complete":
            self.sockets.append(info["return_value"].get_extra_info("socket"))

    def cut(self) -> None:
        """Shuts the newest connection down both ways: the client reads its end, Envoy sees
        its client gone."""
        self.sockets[-1].shutdown(socket.SHUT_RDWR)


def runs_of(stack: Stack, workflow_id: str) -> list[tuple[str, str]]:
    """(id, status) of the workflow's runs, read from the database as an operator would."""
    engine = sqlalchemy.create_engine(stack.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text("SELECT id, status FROM runs WHERE workflow_id = :w"),
                {"w": workflow_id},
            ).all()
    finally:
        engine.dispose()
    return [(str(row[0]), str(row[1])) for row in rows]


@pytest.fixture
def client(stack: Stack, api: Api) -> Iterator[Client]:
    with Client(stack.base_url, api.key, retry=QUICK) as client:
        yield client


# -- the calls -------------------------------------------------------------------------------


def test_workflows_keys_runs_and_their_errors(client: Client, stack: Stack) -> None:
    draft = client.create_workflow({**BMI, "name": "draft"})
    assert (draft.status, draft.latest_version, draft.name) == ("draft", 0, "draft")
    saved = client.save_workflow(draft.id, BMI)
    assert saved.name == "BMI"
    assert client.publish_workflow(draft.id).version == 1
    assert client.get_workflow(draft.id).definition["nodes"][1]["id"] == "calc"  # type: ignore[index]
    assert [w.id for w in client.list_workflows()] == [draft.id]

    result = client.run(draft.id, {"height": "1.8", "weight": 75})
    assert result.output == BMI_OUTPUT
    assert result.session_id and result.session_id.startswith("sess_")
    record = client.get_run(result.run_id)
    assert (record.status, record.output, record.version) == ("succeeded", BMI_OUTPUT, 1)
    assert [node.node_id for node in record.nodes] == ["start", "calc", "end"]

    # A key for one workflow, expiring tomorrow: it runs that workflow and no other.
    other = client.create_workflow({**BMI, "name": "other"})
    client.publish_workflow(other.id)
    expires = datetime.now(UTC) + timedelta(days=1)
    made = client.create_key("team-a", scopes=["run"], expires_at=expires, workflows=[draft.id])
    assert made.key.startswith("fp_") and made.workflows == [draft.id]
    assert made.expires_at is not None and abs(made.expires_at - expires) < timedelta(seconds=1)
    listed = {key.id: key for key in client.list_keys()}
    assert listed[made.id].prefix == made.key[:11] and not listed[made.id].revoked
    with Client(stack.base_url, made.key, retry=QUICK) as team:
        assert team.run(draft.id, BMI_INPUT).output == BMI_OUTPUT
        with pytest.raises(FlowportError) as refused:
            team.run(other.id, BMI_INPUT)
        assert (refused.value.status, refused.value.code) == (403, 403)
        assert refused.value.message == f"this API key may not run workflow {other.id}"

    rotated = client.rotate_key(made.id, grace_s=0)
    assert rotated.id == made.id and rotated.key != made.key
    with Client(stack.base_url, made.key, retry=QUICK) as old:
        with pytest.raises(FlowportError) as stale:
            old.get_run(result.run_id)
        assert (stale.value.status, stale.value.reason) == (401, "UNAUTHENTICATED")
    client.revoke_key(made.id)
    assert {key.id: key for key in client.list_keys()}[made.id].revoked
    with Client(stack.base_url, rotated.key, retry=QUICK) as revoked:
        with pytest.raises(FlowportError) as gone:
            revoked.run(draft.id, BMI_INPUT)
        assert (gone.value.status, gone.value.message) == (401, "invalid API key")

    # Errors keep the server's words, and the reason where the route gives one.
    with pytest.raises(FlowportError) as bad_input:
        client.run(draft.id, {"height": "tall", "weight": 75})
    assert bad_input.value.status == 400
    assert bad_input.value.message == 'input.height: expected a number, got "tall"'
    with pytest.raises(FlowportError) as missing:
        client.get_run("run_nope")
    assert (missing.value.status, missing.value.reason) == (404, "NOT_FOUND")
    with pytest.raises(FlowportError) as invalid:
        client.create_workflow({"name": "x", "nodes": [], "magic": 1})
    assert invalid.value.status == 400 and invalid.value.reason == "INVALID_ARGUMENT"


async def test_the_async_client_makes_the_same_calls(stack: Stack, api: Api) -> None:
    async with AsyncClient(stack.base_url, api.key, retry=QUICK) as client:
        workflow = await client.create_workflow(BMI)
        assert (await client.publish_workflow(workflow.id)).version == 1
        assert [w.id for w in await client.list_workflows()] == [workflow.id]
        assert (await client.get_workflow(workflow.id)).latest_version == 1
        result = await client.run(workflow.id, BMI_INPUT)
        assert result.output == BMI_OUTPUT
        assert (await client.get_run(result.run_id)).status == "succeeded"
        made = await client.create_key("job", workflows=[workflow.id])
        assert made.scopes == ["run"]
        rotated = await client.rotate_key(made.id, grace_s=60)
        assert rotated.previous_key_expires_at is not None
        await client.revoke_key(made.id)
        assert [k.revoked for k in await client.list_keys() if k.id == made.id] == [True]
        with pytest.raises(FlowportError) as missing:
            await client.run("wf_nope", BMI_INPUT)
        assert (missing.value.status, missing.value.message) == (404, "workflow wf_nope not found")


# -- streams and events -------------------------------------------------------------------


def test_a_stream_is_typed_events_and_its_replay_is_the_same(
    client: Client, fake_llm: FakeLlm
) -> None:
    fake_llm.set_reply(tokens=["在", "呢", "。"], reasoning=["想"])
    workflow_id = client.create_workflow(CHAT).id
    client.publish_workflow(workflow_id)

    with client.stream(workflow_id, {"输入": "在吗?"}) as stream:
        events = list(stream)

    assert isinstance(events[0], RunStarted) and events[0].input == {"输入": "在吗?"}
    started = [e.node for e in events if isinstance(e, NodeStarted)]
    finished = [e.node for e in events if isinstance(e, NodeFinished)]
    assert started == finished == ["myinput", "1741675999864", "1741676038250"]
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert "".join(c.reasoning or "" for c in chunks) == "想"
    assert "".join(c.content for c in chunks) == "在呢。"
    output = events[-1]
    assert isinstance(output, Output) and output.output == "在呢。"
    assert output.run_id == stream.run_id and output.usage and output.usage.total_tokens > 0
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    # The run's events, replayed: the same frames, numbered alike; and after frame 3.
    assert list(client.events(output.run_id)) == events
    assert list(client.events(output.run_id, after=3)) == events[3:]


def test_a_failing_run_streams_its_error_as_the_last_event(client: Client) -> None:
    start, calc, end = BMI["nodes"]
    workflow = client.create_workflow(
        {**BMI, "nodes": [start, {**calc, "template": "{{ 1/0 }}"}, end]}
    )
    client.publish_workflow(workflow.id)

    events = list(client.stream(workflow.id, BMI_INPUT))

    failed = events[-1]
    assert isinstance(failed, RunFailed)
    assert (failed.node, failed.code) == ("calc", 500)
    assert failed.message.startswith("node calc:")


def test_a_stream_whose_connection_is_cut_resumes_without_a_gap_or_a_repeat(
    stack: Stack, api: Api, fake_llm: FakeLlm
) -> None:
    tokens = ["one ", "two ", "three ", "four ", "five"]
    fake_llm.set_reply(tokens=tokens, pause_after=2)
    workflow_id = api.publish(CHAT)
    wire = Wire()
    http = httpx.Client(timeout=30, event_hooks=wire.hooks())
    with Client(stack.base_url, api.key, retry=QUICK, http=http) as client, http:
        received = []
        stream = client.stream(workflow_id, {"输入": "count"})
        for event in stream:
            received.append(event)
            text = "".join(e.content for e in received if isinstance(e, Chunk))
            if text == "one two ":
                # The model is held mid-answer: the rest can only come after the cut.
                wire.cut()
                fake_llm.release()
        assert len(wire.sockets) == 2, "resumed on a connection of its own"
        replay = list(client.events(stream.run_id or ""))
        record = client.get_run(stream.run_id or "")

    assert [e.id for e in received] == list(range(1, len(received) + 1))
    assert received == replay
    assert "".join(e.content for e in received if isinstance(e, Chunk)) == "".join(tokens)
    assert isinstance(received[-1], Output) and received[-1].output == "".join(tokens)
    assert record.status == "succeeded"


async def test_an_async_stream_whose_connection_is_cut_resumes_too(
    stack: Stack, api: Api, fake_llm: FakeLlm
) -> None:
    tokens = ["a", "b", "c", "d"]
    fake_llm.set_reply(tokens=tokens, pause_after=1)
    workflow_id = api.publish(CHAT)
    wire = Wire()
    async with (
        httpx.AsyncClient(timeout=30, event_hooks=wire.async_hooks()) as http,
        AsyncClient(stack.base_url, api.key, retry=QUICK, http=http) as client,
    ):
        received = []
        async with client.stream(workflow_id, {"输入": "x"}) as stream:
            async for event in stream:
                received.append(event)
                if isinstance(event, Chunk) and event.content == "a":
                    wire.cut()
                    fake_llm.release()
        replay = [event async for event in client.events(stream.run_id or "")]

    assert received == replay
    assert [e.id for e in received] == list(range(1, len(received) + 1))
    assert isinstance(received[-1], Output) and received[-1].output == "abcd"


# -- background runs, waiting, cancelling -----------------------------------------------------


def test_a_background_run_is_waited_for_by_its_events_or_by_polling(
    client: Client, api: Api
) -> None:
    workflow_id = api.publish(BMI)

    accepted = client.start(workflow_id, BMI_INPUT)
    assert accepted.status == "queued"
    assert accepted.events_url == f"/v1/runs/{accepted.run_id}/events"
    followed = client.wait(accepted.run_id)
    assert (followed.id, followed.status, followed.output) == (
        accepted.run_id,
        "succeeded",
        BMI_OUTPUT,
    )
    assert [node.status for node in followed.nodes] == ["succeeded"] * 3

    polled = client.wait(client.start(workflow_id, BMI_INPUT).run_id, follow=False, poll_s=0.05)
    assert (polled.status, polled.output) == ("succeeded", BMI_OUTPUT)


async def test_an_async_background_run_is_cancelled_and_cancelling_again_is_409(
    stack: Stack, api: Api, fake_llm: FakeLlm
) -> None:
    fake_llm.set_reply(tokens=["x", "y"], pause_after=1)
    workflow_id = api.publish(CHAT)
    async with AsyncClient(stack.base_url, api.key, retry=QUICK) as client:
        accepted = await client.start(workflow_id, {"输入": "hi"})
        assert await asyncio.to_thread(fake_llm.wait_for_tokens, 1)
        cancelled = await client.cancel(accepted.run_id)
        assert (cancelled.status, cancelled.error) == (
            "cancelled",
            "the run was cancelled by a cancel request",
        )
        waited = await client.wait(accepted.run_id)
        assert waited.status == "cancelled"
        events = [event async for event in client.events(accepted.run_id)]
        with pytest.raises(FlowportError) as again:
            await client.cancel(accepted.run_id)

    last = events[-1]
    assert isinstance(last, RunFailed) and last.code == 499
    assert (again.value.status, again.value.reason) == (409, "RUN_ENDED")
    assert again.value.message == "the run already cancelled"


async def test_waiting_for_a_background_run_goes_on_after_its_connection_is_cut(
    stack: Stack, api: Api, fake_llm: FakeLlm
) -> None:
    fake_llm.set_reply(tokens=["slow", " answer"], pause_after=1)
    workflow_id = api.publish(CHAT)
    wire = Wire()
    async with (
        httpx.AsyncClient(timeout=30, event_hooks=wire.async_hooks()) as http,
        AsyncClient(stack.base_url, api.key, retry=QUICK, http=http) as client,
    ):
        accepted = await client.start(workflow_id, {"输入": "hi"})
        waiting = asyncio.create_task(client.wait(accepted.run_id))
        assert await asyncio.to_thread(fake_llm.wait_for_tokens, 1)
        events = f"/v1/runs/{accepted.run_id}/events"
        # The model is held mid-answer while the wait follows the run's events: cut then.
        await asyncio.to_thread(wait_for, lambda: (events, None) in wire.sent, 10, "following")
        wire.cut()
        fake_llm.release()
        run = await waiting

    assert (run.status, run.output) == ("succeeded", "slow answer")
    # Followed again after the cut (after the frames it had, if any had come).
    follows = [after for path, after in wire.sent if path == events]
    assert len(follows) == 2 and follows[0] is None


# -- retries ------------------------------------------------------------------------------


def test_a_blocking_run_cut_off_is_retried_only_under_an_idempotency_key(
    stack: Stack, api: Api, fake_llm: FakeLlm
) -> None:
    fake_llm.set_reply(tokens=["p", "q"], pause_after=1)
    plain = api.publish(CHAT)
    keyed = api.publish({**CHAT, "name": "keyed"})

    def cut_while_running(workflow_id: str, **options: Any) -> tuple[Wire, Any]:
        wire = Wire()
        with (
            httpx.Client(timeout=30, event_hooks=wire.hooks()) as http,
            Client(stack.base_url, api.key, retry=QUICK, http=http) as client,
            ThreadPoolExecutor(1) as pool,
        ):
            call = pool.submit(client.run, workflow_id, {"输入": "hi"}, **options)
            assert fake_llm.wait_for_tokens(1)
            wire.cut()
            if options:
                # The retry is on a new connection: the run ends under it.
                wait_for(lambda: len(wire.sockets) == 2, what="the retry's connection")
                fake_llm.release()
            else:
                # The server cancels a blocking run whose client left, held mid-answer.
                wait_for(
                    lambda: [status for _, status in runs_of(stack, workflow_id)] == ["cancelled"]
                )
            try:
                return wire, call.result(30)
            except Exception as error:
                return wire, error

    wire, error = cut_while_running(plain)
    assert isinstance(error, httpx.RemoteProtocolError | httpx.ReadError), error
    assert wire.requests == 1, "no Idempotency-Key: not sent again"
    assert len(runs_of(stack, plain)) == 1

    fake_llm.reset()
    fake_llm.set_reply(tokens=["p", "q"], pause_after=1)
    wire, result = cut_while_running(keyed, idempotent=True)
    assert wire.requests == 2
    assert result.output == "pq"
    assert runs_of(stack, keyed) == [(result.run_id, "succeeded")]


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str, str]]:
    """A stack allowing one call a second per key; its BMI workflow and a key."""
    data_dir: Path = tmp_path_factory.mktemp("limited-sdk")
    stack = Stack(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'flowport.db'}",
        llm_base_url=None,
        extra_env={"FLOWPORT_RATE_LIMIT_PER_KEY": "1"},
    )
    definition = data_dir / "bmi.json"
    definition.write_text(json.dumps(BMI), encoding="utf-8")
    stack.start()
    try:
        published = stack.cli("workflows", "publish", str(definition), "--account", "sdk")
        assert published.returncode == 0, published.stderr
        _, key = stack.create_key(account="sdk")
        yield stack, published.stdout.split()[0], key
    finally:
        stack.stop()


def test_a_rate_limited_call_waits_its_retry_after_unless_it_may_not_be_repeated(
    limited: tuple[Stack, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    stack, workflow_id, key = limited
    before = {run for run, _ in runs_of(stack, workflow_id)}
    wire = Wire()
    caplog.set_level("INFO", logger="flowport.client")
    with (
        httpx.Client(timeout=30, event_hooks=wire.hooks()) as http,
        Client(stack.base_url, key, retry=QUICK, http=http) as client,
    ):
        # One call a second: calls in a row soon meet a 429, and wait it out.
        keyed = []
        while 429 not in wire.statuses and len(keyed) < 5:
            keyed.append(client.run(workflow_id, BMI_INPUT, idempotent=True))
        assert 429 in wire.statuses and wire.statuses[-1] == 200
        assert [result.output for result in keyed] == [BMI_OUTPUT] * len(keyed)
        # The wait was the Retry-After (whole seconds), not the far shorter backoff.
        waits = [record.args[2] for record in caplog.records if "HTTP 429" in record.getMessage()]
        assert waits and all(wait >= 1 for wait in waits)  # type: ignore[operator]

        # Without an Idempotency-Key a 429 is raised, the call sent once.
        plain = []
        for _ in range(5):
            sent = wire.requests
            try:
                plain.append(client.run(workflow_id, BMI_INPUT))
            except FlowportError as error:
                limited_error = error
                break
        else:
            pytest.fail("five calls in a row were never limited")
        assert wire.requests == sent + 1, "a run without an Idempotency-Key is not sent again"
        assert limited_error.status == 429 and limited_error.reason is None
        assert limited_error.retry_after is not None and limited_error.retry_after >= 1

        # Reading is always safe to repeat.
        assert [client.get_run(result.run_id).status for result in keyed] == ["succeeded"] * len(
            keyed
        )
    made = {run for run, _ in runs_of(stack, workflow_id)} - before
    assert made == {result.run_id for result in keyed + plain}


async def test_the_async_client_waits_out_a_429_too(limited: tuple[Stack, str, str]) -> None:
    stack, workflow_id, key = limited
    wire = Wire()
    async with (
        httpx.AsyncClient(timeout=30, event_hooks=wire.async_hooks()) as http,
        AsyncClient(stack.base_url, key, retry=QUICK, http=http) as client,
    ):
        runs = [await client.run(workflow_id, BMI_INPUT, idempotency_key=f"k{n}") for n in (1, 2)]
    assert [run.output for run in runs] == [BMI_OUTPUT] * 2
    assert 429 in wire.statuses


def test_envoys_503_while_no_service_serves_is_retried_until_one_does(tmp_path: Path) -> None:
    """The service dies, its Envoy goes on answering 503; a new service on the same port
    brings the answers back. A read retried meanwhile gets through; a run is tried once."""
    stack = Stack(
        data_dir=tmp_path / "first",
        database_url=f"sqlite:///{tmp_path / 'flowport.db'}",
        llm_base_url=None,
    )
    stack.start()
    # The same service again, behind an Envoy of its own: the first Envoy finds it too.
    again = Stack(
        data_dir=tmp_path / "again",
        database_url=stack.database_url,
        llm_base_url=None,
        grpc_port=stack.grpc_port,
    )
    wire = Wire()
    restarting = ThreadPoolExecutor(1)
    restarted: list[Any] = []

    def restart_on_first_503(response: httpx.Response) -> None:
        if response.status_code == 503 and not restarted:
            restarted.append(restarting.submit(again.start))

    patient = RetryPolicy(max_attempts=100, backoff_s=0.1, max_backoff_s=0.3)
    try:
        _, key = stack.create_key()
        with httpx.Client(timeout=10, event_hooks=wire.hooks()) as http:
            with Client(stack.base_url, key, retry=QUICK, http=http) as client:
                assert client.list_keys()
                assert stack.process is not None
                stack.process.kill()
                stack.process.wait()
                with pytest.raises(FlowportError) as unavailable:
                    client.list_keys()
                assert unavailable.value.status == 503
                assert wire.statuses[-QUICK.max_attempts :] == [503] * QUICK.max_attempts
                sent = wire.requests
                with pytest.raises(FlowportError) as refused:
                    client.run("wf_x", BMI_INPUT)
                assert refused.value.status == 503 and wire.requests == sent + 1

            http.event_hooks["response"].append(restart_on_first_503)
            with Client(stack.base_url, key, retry=patient, http=http) as client:
                keys = client.list_keys()
        assert [k.name for k in keys] == ["test"]
        assert restarted, "the retried call met a 503 first"
        restarted[0].result(60)
    finally:
        restarting.shutdown(wait=True)
        again.stop()
        stack.kill()


def test_a_closed_port_is_tried_again_then_raised_but_a_run_only_once() -> None:
    wire = Wire()
    url = f"http://127.0.0.1:{free_port()}"
    with (
        httpx.Client(timeout=5, event_hooks=wire.hooks()) as http,
        Client(url, "fp_test", retry=QUICK, http=http) as client,
    ):
        with pytest.raises(httpx.ConnectError):
            client.get_run("run_x")
        assert wire.requests == QUICK.max_attempts
        with pytest.raises(httpx.ConnectError):
            client.run("wf_x", BMI_INPUT)
        assert wire.requests == QUICK.max_attempts + 1
        with pytest.raises(httpx.ConnectError):
            client.run("wf_x", BMI_INPUT, idempotent=True)
        assert wire.requests == 2 * QUICK.max_attempts + 1


async def test_the_async_client_against_a_closed_port() -> None:
    wire = Wire()
    async with (
        httpx.AsyncClient(timeout=5, event_hooks=wire.async_hooks()) as http,
        AsyncClient(f"http://127.0.0.1:{free_port()}", "fp_test", retry=QUICK, http=http) as c,
    ):
        with pytest.raises(httpx.ConnectError):
            await c.list_keys()
        assert wire.requests == QUICK.max_attempts
        with pytest.raises(httpx.ConnectError):
            await c.create_workflow(BMI)
        assert wire.requests == QUICK.max_attempts + 1


# -- the documented examples ------------------------------------------------------------------


def _run_python_blocks(document: str, stack: Stack, key: str, tmp_path: Path) -> list[str]:
    """Runs every ```python block of the document, in order, each as a script a user would
    save, with the environment the document names; their outputs."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / document).read_text("utf-8"), re.S)
    assert blocks, f"{document} has no Python example"
    outputs = []
    for number, block in enumerate(blocks):
        script = tmp_path / f"example{number}.py"
        script.write_text(block, encoding="utf-8")
        ran = subprocess.run(
            [sys.executable, str(script)],
            env={**os.environ, "FLOWPORT_URL": stack.base_url, "FLOWPORT_KEY": key},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.returncode == 0, f"{document}, block {number + 1}:\n{ran.stderr}"
        outputs.append(ran.stdout)
    return outputs


def test_the_readme_example_runs(stack: Stack, api: Api, tmp_path: Path) -> None:
    # The README's example uses `make run`'s demo workflow, BMI.
    api.publish(BMI)

    (output,) = _run_python_blocks("README.md", stack, api.key, tmp_path)

    lines = output.splitlines()
    assert lines[0] == BMI_OUTPUT
    assert lines[1] == "1 run_started" and lines[-2].endswith(" output")
    assert lines[-1] == f"succeeded {BMI_OUTPUT}"


def test_the_python_client_page_examples_run(stack: Stack, api: Api, tmp_path: Path) -> None:
    sync, asynchronous = _run_python_blocks("docs/python-client.md", stack, api.key, tmp_path)

    lines = sync.splitlines()
    assert lines[0] == "published version 1"
    assert lines[1].startswith(BMI_OUTPUT + " run_")
    assert [line.split()[1] for line in lines if line.startswith("node ")] == [
        "start",
        "calc",
        "end",
    ]
    assert f"output: {BMI_OUTPUT}" in lines
    assert f"succeeded {BMI_OUTPUT} ['succeeded', 'succeeded', 'succeeded']" in lines
    assert lines[-1] == '400 input.height: expected a number, got "tall"'
    assert asynchronous.splitlines()[0] == "1 run_started"
    assert asynchronous.splitlines()[-1].endswith(" output")
