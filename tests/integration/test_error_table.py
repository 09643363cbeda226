"""Every kind of error in flowport.statuses' table, through every surface where it can happen,
against the real stack: each surface answers what the kind's row says.

The walk is driven by the table: a kind without a trigger here fails
`test_every_kind_of_the_table_has_a_trigger`, and every trigger runs through every surface
of its group (runs, or management calls).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import grpc
import httpx
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from flowport import statuses
from flowport.convert import struct
from flowport.demo import BMI, CHAT
from flowport.errors import (
    Cancelled,
    ContentBlocked,
    CreditsExhausted,
    DeadlineExceeded,
    FlowportError,
    IdempotencyKeyReused,
    InvalidArgument,
    KeyExpired,
    MissingScope,
    NotFound,
    OriginNotAllowed,
    PermissionDenied,
    QueueFull,
    RateLimited,
    RunEnded,
    SubWorkflowNotFound,
    Unauthenticated,
    Unavailable,
    UpstreamFailed,
    VersionNotFound,
    WorkflowNotAllowed,
)
from flowport.v1 import (
    keys_pb2,
    keys_pb2_grpc,
    runner_pb2,
    runner_pb2_grpc,
    runs_pb2,
    runs_pb2_grpc,
)
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api, linkai_failure
from tests.integration.stack import REPO, Stack

BMI_INPUT = {"height": 2, "weight": 80}
UNKNOWN_KEY = "fp_" + "0" * 32
# When a run's call fails: refused before the run starts, or the run failing once under way.
Stage = Literal["before", "during"]
# What a surface answered: its form ("status", "frame", "event"), the status or code in it,
# and the ErrorInfo reason where the surface carries one.
Answer = tuple[str, int, str | None]
Metadata = list[tuple[str, str]]


@dataclass
class RunCall:
    """A run call that fails with one kind of error."""

    stack: Stack
    key: str
    workflow_id: str
    input: dict[str, Any]
    stage: Stage
    # Done once the run is under way, while the call waits for its answer (a cancel call).
    while_running: Callable[[], None] | None = None
    # Headers (gRPC metadata) besides the key.
    headers: dict[str, str] = field(default_factory=dict)
    # "async": a background run, which only the surfaces that answer at once can make.
    mode: str | None = None
    # The version the call pins: a number or an alias.
    version: int | str | None = None


@dataclass
class ManagementCall:
    """A management call that fails with one kind of error, as REST and as gRPC."""

    stack: Stack
    key: str
    rest: tuple[str, str, dict[str, Any] | None]  # method, path, JSON body
    grpc: Callable[[grpc.Channel, Metadata], object]


@dataclass
class Limited:
    """A stack with no LLM provider and one call a second per key, and a chat workflow on it."""

    stack: Stack
    account: str
    chat: str


@dataclass
class World:
    """What the triggers use."""

    stack: Stack
    api: Api
    fake_llm: FakeLlm
    limited: Limited
    # A key of an account whose credits are used up, and a workflow of that account.
    broke: tuple[str, str]


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limited]:
    data_dir: Path = tmp_path_factory.mktemp("limited")
    stack = Stack(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'flowport.db'}",
        llm_base_url=None,
        extra_env={
            "FLOWPORT_RATE_LIMIT_PER_KEY": "1",
            # Background runs wait here: nothing takes them, and one fills the queue.
            "FLOWPORT_JOBS_CONCURRENCY": "0",
            "FLOWPORT_MAX_QUEUED_PER_ACCOUNT": "1",
        },
    )
    chat = data_dir / "chat.json"
    chat.write_text(json.dumps(CHAT), encoding="utf-8")
    stack.start()
    try:
        published = stack.cli("workflows", "publish", str(chat), "--account", "limited")
        assert published.returncode == 0, published.stderr
        yield Limited(stack, "limited", published.stdout.split()[0])
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def broke(stack: Stack) -> tuple[str, str]:
    """Set once for the module: the CLI takes a second or so."""
    account, key = stack.create_key()
    with Api(stack.base_url, key) as api:
        bmi = api.publish(BMI)
    assert stack.cli("accounts", "set-credits", account, "0").returncode == 0
    return key, bmi


@pytest.fixture
def world(
    stack: Stack, api: Api, fake_llm: FakeLlm, limited: Limited, broke: tuple[str, str]
) -> World:
    return World(stack, api, fake_llm, limited, broke)


# -- triggers: one kind of error each -------------------------------------------------------


def bad_input(world: World) -> RunCall:
    bmi = world.api.publish(BMI)
    return RunCall(world.stack, world.api.key, bmi, {"height": "tall", "weight": 75}, "before")


def unknown_key(world: World) -> RunCall:
    return RunCall(world.stack, UNKNOWN_KEY, world.api.publish(BMI), BMI_INPUT, "before")


def another_accounts_private_workflow(world: World) -> RunCall:
    _, other = world.stack.create_key(scopes=("run",))
    return RunCall(world.stack, other, world.api.publish(BMI), BMI_INPUT, "before")


def key_without_the_run_scope(world: World) -> RunCall:
    _, admin_only = world.stack.create_key(account=world.api.account, scopes=("admin",))
    return RunCall(world.stack, admin_only, world.api.publish(BMI), BMI_INPUT, "before")


def _expired_key(world: World, scopes: list[str]) -> str:
    """A key of the world's account whose `expires_at` has just passed."""
    expires = datetime.now(UTC) + timedelta(seconds=1)
    made = world.api.post(
        "/v1/keys", {"name": "short", "scopes": scopes, "expires_at": expires.isoformat()}
    )
    assert made.status_code == 200, made.text
    time.sleep((expires - datetime.now(UTC)).total_seconds() + 0.05)
    return str(made.json()["key"])


def expired_key(world: World) -> RunCall:
    key = _expired_key(world, ["run"])
    return RunCall(world.stack, key, world.api.publish(BMI), BMI_INPUT, "before")


def workflow_outside_the_keys_list(world: World) -> RunCall:
    allowed = world.api.publish(BMI)
    made = world.api.post("/v1/keys", {"name": "team", "workflows": [allowed]})
    assert made.status_code == 200, made.text
    return RunCall(world.stack, made.json()["key"], world.api.publish(BMI), BMI_INPUT, "before")


def origin_the_account_does_not_allow(world: World) -> RunCall:
    origin = "https://not-listed.example.com"
    # Envoy tells the service a cross-origin call's origin; straight to the gRPC port, the
    # call carries that header itself.
    headers = {"Origin": origin, "x-flowport-origin": origin}
    workflow_id = world.api.publish(BMI)
    return RunCall(world.stack, world.api.key, workflow_id, BMI_INPUT, "before", headers=headers)


def unknown_workflow(world: World) -> RunCall:
    return RunCall(world.stack, world.api.key, "wf_missing", BMI_INPUT, "before")


def unknown_alias(world: World) -> RunCall:
    workflow_id = world.api.publish(BMI)
    return RunCall(world.stack, world.api.key, workflow_id, BMI_INPUT, "before", version="prod")


def missing_sub_workflow(world: World) -> RunCall:
    definition = json.loads((REPO / "docs" / "examples" / "workflow.json").read_text("utf-8"))
    definition["nodes"][1]["workflow_id"] = "wf_missing"
    workflow_id = world.api.publish(definition)
    return RunCall(
        world.stack, world.api.key, workflow_id, {"height_cm": 180, "weight_kg": 75}, "during"
    )


def no_credits_left(world: World) -> RunCall:
    key, bmi = world.broke
    return RunCall(world.stack, key, bmi, BMI_INPUT, "before")


def blocked_input(world: World) -> RunCall:
    chat = world.api.publish(CHAT)
    return RunCall(world.stack, world.api.key, chat, {"输入": "say forbiddenword"}, "before")


def blocked_output(world: World) -> RunCall:
    world.fake_llm.set_reply(tokens=["this is ", "禁", "词 ok"])
    chat = world.api.publish(CHAT)
    return RunCall(world.stack, world.api.key, chat, {"输入": "hi"}, "during")


def too_fast(world: World) -> RunCall:
    key = _spent_key(world.limited)
    return RunCall(world.limited.stack, key, world.limited.chat, {"输入": "hi"}, "before")


def llm_provider_failing(world: World) -> RunCall:
    world.fake_llm.set_reply(tokens=[], status=500)
    chat = world.api.publish(CHAT)
    return RunCall(world.stack, world.api.key, chat, {"输入": "hi"}, "during")


def no_llm_provider(world: World) -> RunCall:
    _, key = world.limited.stack.create_key(account=world.limited.account, scopes=("run",))
    return RunCall(world.limited.stack, key, world.limited.chat, {"输入": "hi"}, "during")


def past_the_timeout(world: World) -> RunCall:
    world.fake_llm.set_reply(tokens=["never", "finished"], pause_after=1)  # the model stalls
    chat = world.api.publish({**CHAT, "timeout_s": 0.3})
    return RunCall(world.stack, world.api.key, chat, {"输入": "hi"}, "during")


def cancel_call(world: World) -> RunCall:
    world.fake_llm.set_reply(tokens=["a", "b"], pause_after=1)  # held mid-answer
    chat = world.api.publish(CHAT)

    def cancel() -> None:
        assert world.fake_llm.wait_for_tokens(1)
        run_id = world.stack.running_run(chat)
        assert world.api.post(f"/v1/runs/{run_id}:cancel", {}).status_code == 200

    return RunCall(world.stack, world.api.key, chat, {"输入": "hi"}, "during", cancel)


def failing_node(world: World) -> RunCall:
    # The BMI template divides by the height squared.
    bmi = world.api.publish(BMI)
    return RunCall(world.stack, world.api.key, bmi, {"height": 0, "weight": 75}, "during")


def queue_full(world: World) -> RunCall:
    # One background run of the account waits, nothing takes it: its queue is full from
    # then on (202 the first time, 429 after).
    limited = world.limited
    _, filler = limited.stack.create_key(account=limited.account, scopes=("run",))
    with Api(limited.stack.base_url, filler) as api:
        waiting = api.run(limited.chat, {"输入": "hi"}, mode="async")
    assert waiting.status_code in (202, 429), waiting.text
    _, key = limited.stack.create_key(account=limited.account, scopes=("run",))
    return RunCall(limited.stack, key, limited.chat, {"输入": "hi"}, "before", mode="async")


def idempotency_key_reused(world: World) -> RunCall:
    bmi = world.api.publish(BMI)
    key = f"key-{uuid.uuid4().hex}"
    first = world.api.run(bmi, {"height": 1, "weight": 1}, headers=_with_key(world.api, key))
    assert first.status_code == 200, first.text
    # The same key with another body (or on another surface: the route is part of it).
    return RunCall(
        world.stack, world.api.key, bmi, BMI_INPUT, "before", headers={"Idempotency-Key": key}
    )


def _with_key(api: Api, key: str) -> dict[str, str]:
    return {**api.headers, "Idempotency-Key": key}


def _list_keys(channel: grpc.Channel, metadata: Metadata) -> object:
    return keys_pb2_grpc.ApiKeysStub(channel).ListApiKeys(
        keys_pb2.ListApiKeysRequest(), metadata=metadata
    )


def unknown_scope(world: World) -> ManagementCall:
    def create(channel: grpc.Channel, metadata: Metadata) -> object:
        request = keys_pb2.CreateApiKeyRequest(name="k", scopes=["root"])
        return keys_pb2_grpc.ApiKeysStub(channel).CreateApiKey(request, metadata=metadata)

    rest = ("POST", "/v1/keys", {"name": "k", "scopes": ["root"]})
    return ManagementCall(world.stack, world.api.key, rest, create)


def unknown_key_managing(world: World) -> ManagementCall:
    return ManagementCall(world.stack, UNKNOWN_KEY, ("GET", "/v1/keys", None), _list_keys)


def expired_key_managing(world: World) -> ManagementCall:
    key = _expired_key(world, ["admin", "run"])
    return ManagementCall(world.stack, key, ("GET", "/v1/keys", None), _list_keys)


def run_only_key_managing(world: World) -> ManagementCall:
    _, run_only = world.stack.create_key(account=world.api.account, scopes=("run",))
    return ManagementCall(world.stack, run_only, ("GET", "/v1/keys", None), _list_keys)


def unknown_run(world: World) -> ManagementCall:
    def get(channel: grpc.Channel, metadata: Metadata) -> object:
        request = runs_pb2.GetRunRequest(run_id="run_missing")
        return runs_pb2_grpc.RunsStub(channel).GetRun(request, metadata=metadata)

    return ManagementCall(world.stack, world.api.key, ("GET", "/v1/runs/run_missing", None), get)


def cancel_of_an_ended_run(world: World) -> ManagementCall:
    run_id = world.api.run(world.api.publish(BMI), {"height": 2, "weight": 80}).json()["run_id"]

    def cancel(channel: grpc.Channel, metadata: Metadata) -> object:
        request = runs_pb2.CancelRunRequest(run_id=run_id)
        return runs_pb2_grpc.RunsStub(channel).CancelRun(request, metadata=metadata)

    rest = ("POST", f"/v1/runs/{run_id}:cancel", {})
    return ManagementCall(world.stack, world.api.key, rest, cancel)


def too_fast_managing(world: World) -> ManagementCall:
    key = _spent_key(world.limited)
    return ManagementCall(world.limited.stack, key, ("GET", "/v1/keys", None), _list_keys)


def _spent_key(limited: Limited) -> str:
    """An admin key of the limited stack that has just made its one call of the second."""
    _, key = limited.stack.create_key(account=limited.account)
    spent = httpx.get(f"{limited.stack.base_url}/v1/runs/run_missing", headers={"X-API-KEY": key})
    assert spent.status_code == 404, spent.text
    return key


RunTrigger = Callable[[World], RunCall]
ManagementTrigger = Callable[[World], ManagementCall]

# fmt: off
RUN_TRIGGERS: dict[type[FlowportError], list[RunTrigger]] = {
    InvalidArgument:     [bad_input],
    Unauthenticated:     [unknown_key],
    KeyExpired:          [expired_key],
    PermissionDenied:    [another_accounts_private_workflow],
    MissingScope:        [key_without_the_run_scope],
    WorkflowNotAllowed:  [workflow_outside_the_keys_list],
    OriginNotAllowed:    [origin_the_account_does_not_allow],
    NotFound:            [unknown_workflow],
    VersionNotFound:     [unknown_alias],
    SubWorkflowNotFound: [missing_sub_workflow],
    CreditsExhausted:    [no_credits_left],
    ContentBlocked:      [blocked_input, blocked_output],
    RateLimited:         [too_fast],
    QueueFull:           [queue_full],
    IdempotencyKeyReused: [idempotency_key_reused],
    UpstreamFailed:      [llm_provider_failing],
    Unavailable:         [no_llm_provider],
    DeadlineExceeded:    [past_the_timeout],
    Cancelled:           [cancel_call],
    FlowportError:       [failing_node],
}
# The kinds a management call can fail with (none of them runs a workflow).
MANAGEMENT_TRIGGERS: dict[type[FlowportError], list[ManagementTrigger]] = {
    InvalidArgument:     [unknown_scope],
    Unauthenticated:     [unknown_key_managing],
    KeyExpired:          [expired_key_managing],
    MissingScope:        [run_only_key_managing],
    NotFound:            [unknown_run],
    RateLimited:         [too_fast_managing],
    RunEnded:            [cancel_of_an_ended_run],
}
# fmt: on


# -- surfaces: each makes the call and says what it answered --------------------------------


def _headers(call: RunCall) -> dict[str, str]:
    return {"X-API-KEY": call.key, **call.headers}


def _metadata(call: RunCall) -> Metadata:
    return [("x-api-key", call.key), *((k.lower(), v) for k, v in call.headers.items())]


def _mode(call: RunCall) -> dict[str, Any]:
    """The body's fields besides the input: the mode and the version pinned, when set."""
    return ({"mode": call.mode} if call.mode else {}) | (
        {"version": call.version} if call.version is not None else {}
    )


def _pin(call: RunCall) -> struct_pb2.Value | None:
    return None if call.version is None else json_format.ParseDict(call.version, struct_pb2.Value())


def flowai(call: RunCall) -> Answer:
    with Api(call.stack.base_url, call.key) as api:
        response = api.run(call.workflow_id, call.input, headers=_headers(call), **_mode(call))
    body = response.json()
    assert list(body) == ["code", "message"] and body["code"] == response.status_code, body
    return ("status", response.status_code, None)


def flowai_stream(call: RunCall) -> Answer:
    with (
        Api(call.stack.base_url, call.key) as api,
        api.stream(call.workflow_id, call.input, headers=_headers(call), **_mode(call)) as sse,
    ):
        if sse.response.status_code != 200:
            body = json.loads(sse.response.read())
            assert body["code"] == sse.response.status_code, body
            return ("status", sse.response.status_code, None)
        event, data = [(frame.event, json.loads(frame.data)) for frame in sse.iter_sse()][-1]
    assert event == "error", data
    return ("frame", data["code"], None)


def linkai(call: RunCall) -> Answer:
    body = {"app_code": call.workflow_id, "args": call.input, **_mode(call)}
    headers = {"Authorization": f"Bearer {call.key}", **call.headers}
    response = httpx.post(f"{call.stack.base_url}/v1/workflow/run", json=body, headers=headers)
    linkai_failure(response, response.status_code)
    return ("status", response.status_code, None)


def grpc_run(call: RunCall) -> Answer:
    request = runner_pb2.RunRequest(
        workflow_id=call.workflow_id,
        input=struct(call.input),
        mode=call.mode or "",
        version=_pin(call),
    )
    with grpc.insecure_channel(call.stack.envoy_target) as channel:
        runner = runner_pb2_grpc.WorkflowRunnerStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            runner.Run(request, metadata=_metadata(call))
    return _grpc_answer(raised.value)


def grpc_stream(call: RunCall) -> Answer:
    request = runner_pb2.RunStreamRequest(
        workflow_id=call.workflow_id, input=struct(call.input), version=_pin(call)
    )
    with grpc.insecure_channel(call.stack.envoy_target) as channel:
        runner = runner_pb2_grpc.WorkflowRunnerStub(channel)
        try:
            events = list(runner.RunStream(request, metadata=_metadata(call)))
        except grpc.RpcError as error:
            return _grpc_answer(error)
    assert events[-1].WhichOneof("event") == "error", events[-1]
    return ("event", events[-1].error.code, None)


def rest_run(call: RunCall) -> Answer:
    response = httpx.post(
        f"{call.stack.base_url}/v1/workflows/{call.workflow_id}:run",
        json={"input": call.input, **_mode(call)},
        headers=_headers(call),
        timeout=30,
    )
    return _status_answer(response)


def rest_stream(call: RunCall) -> Answer:
    response = httpx.post(
        f"{call.stack.base_url}/v1/workflows/{call.workflow_id}:runStream",
        json={"input": call.input, **_mode(call)},
        headers=_headers(call),
        timeout=30,
    )
    if response.status_code != 200:
        return _status_answer(response)
    last = response.json()[-1]
    assert "error" in last, last
    return ("event", last["error"]["code"], None)


def management_rest(call: ManagementCall) -> Answer:
    method, path, body = call.rest
    response = httpx.request(
        method, f"{call.stack.base_url}{path}", json=body, headers={"X-API-KEY": call.key}
    )
    return _status_answer(response)


def management_grpc(call: ManagementCall) -> Answer:
    channel = grpc.insecure_channel(call.stack.envoy_target)
    with channel, pytest.raises(grpc.RpcError) as raised:
        call.grpc(channel, [("x-api-key", call.key)])
    return _grpc_answer(raised.value)


def _status_answer(response: httpx.Response) -> Answer:
    """A google.rpc.Status JSON answer: its `code` is the HTTP status; its ErrorInfo's reason."""
    body = response.json()
    assert body["code"] == response.status_code, body
    assert not any(name.startswith(("grpc-", "x-http-status")) for name in response.headers)
    return ("status", response.status_code, _reason(body["details"]))


def _reason(details: list[dict[str, Any]]) -> str:
    infos = [d for d in details if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"]
    assert [info["domain"] for info in infos] == [statuses.DOMAIN], details
    return str(infos[0]["reason"])


def _grpc_answer(error: grpc.RpcError) -> Answer:
    """The status code, and the ErrorInfo of the rich status grpcio-status reads back."""
    status = rpc_status.from_call(error)
    assert status is not None, error
    info = error_details_pb2.ErrorInfo()
    assert any(detail.Unpack(info) for detail in status.details), status
    assert info.domain == statuses.DOMAIN
    return ("status", error.code().value[0], info.reason)


RUN_SURFACES = (flowai, flowai_stream, linkai, grpc_run, grpc_stream, rest_run, rest_stream)
# The surfaces that can start a background run: a stream cannot.
ASYNC_SURFACES = (flowai, linkai, grpc_run, rest_run)
ASYNC_TRIGGERS = (queue_full,)
MANAGEMENT_SURFACES = (management_rest, management_grpc)


# fmt: off
# What each surface answers for a kind's row.
EXPECTED: dict[Callable[..., Answer], Callable[[statuses.Statuses, Stage], Answer]] = {
    flowai:          lambda row, stage: ("status", row.rest, None),
    flowai_stream:   lambda row, stage: ("status" if stage == "before" else "frame", row.rest, None),
    linkai:          lambda row, stage: ("status", row.linkai, None),
    grpc_run:        lambda row, stage: ("status", row.grpc, row.reason),
    grpc_stream:     lambda row, stage: (
        ("status", row.grpc, row.reason) if stage == "before" else ("event", row.rest, None)
    ),
    rest_run:        lambda row, stage: ("status", row.rest, row.reason),
    rest_stream:     lambda row, stage: (
        ("status", row.rest, row.reason) if stage == "before" else ("event", row.rest, None)
    ),
    management_rest: lambda row, stage: ("status", row.rest, row.reason),
    management_grpc: lambda row, stage: ("status", row.grpc, row.reason),
}
# fmt: on


def _walk(triggers: dict[type[FlowportError], list[Any]], surfaces: tuple[Any, ...]) -> list[Any]:
    """A test case for every trigger of every kind of the table, through every surface."""
    return [
        pytest.param(
            kind, trigger, surface, id=f"{kind.__name__}-{trigger.__name__}-{surface.__name__}"
        )
        for kind in statuses.TABLE
        for trigger in triggers.get(kind, [])
        for surface in surfaces
        if trigger not in ASYNC_TRIGGERS or surface in ASYNC_SURFACES
    ]


def test_every_kind_of_the_table_has_a_trigger() -> None:
    assert set(RUN_TRIGGERS) | set(MANAGEMENT_TRIGGERS) == set(statuses.TABLE)


@pytest.mark.parametrize(("kind", "trigger", "surface"), _walk(RUN_TRIGGERS, RUN_SURFACES))
def test_run_surfaces_answer_the_row_of_the_kind(
    world: World,
    kind: type[FlowportError],
    trigger: RunTrigger,
    surface: Callable[[RunCall], Answer],
) -> None:
    call = trigger(world)

    if call.while_running is None:
        answer = surface(call)
    else:
        with ThreadPoolExecutor(max_workers=1) as pool:
            answering = pool.submit(surface, call)
            call.while_running()
            answer = answering.result(timeout=30)

    assert answer == EXPECTED[surface](statuses.TABLE[kind], call.stage)


@pytest.mark.parametrize(
    ("kind", "trigger", "surface"), _walk(MANAGEMENT_TRIGGERS, MANAGEMENT_SURFACES)
)
def test_management_surfaces_answer_the_row_of_the_kind(
    world: World,
    kind: type[FlowportError],
    trigger: ManagementTrigger,
    surface: Callable[[ManagementCall], Answer],
) -> None:
    answer = surface(trigger(world))

    assert answer == EXPECTED[surface](statuses.TABLE[kind], "before")
