"""gRPC clients: Run and RunStream directly and through Envoy, statuses, health, reflection."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from flowport.demo import BMI, CHAT
from flowport.v1 import runner_pb2, runner_pb2_grpc, workflows_pb2, workflows_pb2_grpc
from tests.integration.client import Api
from tests.integration.stack import Stack


@pytest.fixture(params=["direct", "envoy"])
def channel(request: pytest.FixtureRequest, stack: Stack) -> Iterator[grpc.Channel]:
    target = stack.grpc_target if request.param == "direct" else stack.envoy_target
    with grpc.insecure_channel(target) as channel:
        yield channel


def _input(**values: object) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def test_run_answers_with_output(api: Api, channel: grpc.Channel) -> None:
    workflow_id = api.publish(BMI)
    runner = runner_pb2_grpc.WorkflowRunnerStub(channel)

    response = runner.Run(
        runner_pb2.RunRequest(workflow_id=workflow_id, input=_input(height="1.8", weight=75)),
        metadata=[("x-api-key", api.key)],
    )

    assert response.output == "您的BMI值是23.15"
    assert response.total_time > 0
    assert response.run_id.startswith("run_")
    assert response.session_id


def test_bearer_metadata_and_management_over_grpc(api: Api, channel: grpc.Channel) -> None:
    workflows = workflows_pb2_grpc.WorkflowsStub(channel)
    metadata = [("authorization", f"Bearer {api.key}")]
    definition = struct_pb2.Struct()
    definition.update(BMI)

    created = workflows.CreateWorkflow(
        workflows_pb2.CreateWorkflowRequest(definition=definition), metadata=metadata
    )
    published = workflows.PublishWorkflow(
        workflows_pb2.PublishWorkflowRequest(id=created.id), metadata=metadata
    )

    assert created.status == "draft"
    assert published.version == 1


def test_run_stream_sends_typed_events_in_order(api: Api, channel: grpc.Channel, fake_llm) -> None:
    # Apart in time, so each is an event of its own (tokens queued together are joined).
    fake_llm.set_reply(tokens=["嗯", ",", "在", "呢", "。"], delay_s=0.05)
    workflow_id = api.publish(CHAT)
    runner = runner_pb2_grpc.WorkflowRunnerStub(channel)

    events = list(
        runner.RunStream(
            runner_pb2.RunStreamRequest(workflow_id=workflow_id, input=_input(输入="在吗?")),
            metadata=[("x-api-key", api.key)],
        )
    )

    kinds = [event.WhichOneof("event") for event in events]
    assert kinds[0] == "run_started"
    assert kinds[-1] == "output"
    assert kinds.count("token") == 5
    assert "".join(e.token.content for e in events if e.HasField("token")) == "嗯,在呢。"
    assert events[-1].output.output == "嗯,在呢。"
    finished = [e.node_finished for e in events if e.HasField("node_finished")]
    assert [f.node_id for f in finished] == ["myinput", "1741675999864", "1741676038250"]
    assert all(f.status == "succeeded" and f.time_spend >= 0 for f in finished)


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("no key", grpc.StatusCode.UNAUTHENTICATED),
        ("bad key", grpc.StatusCode.UNAUTHENTICATED),
        ("no workflow", grpc.StatusCode.NOT_FOUND),
        ("bad input", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_errors_are_standard_status_codes(
    api: Api, channel: grpc.Channel, case: str, code: grpc.StatusCode
) -> None:
    workflow_id = api.publish(BMI)
    metadata = {"no key": [], "bad key": [("x-api-key", "fp_" + "0" * 32)]}.get(
        case, [("x-api-key", api.key)]
    )
    request = runner_pb2.RunRequest(
        workflow_id="wf_missing" if case == "no workflow" else workflow_id,
        input=_input(height="x", weight=1) if case == "bad input" else _input(height=2, weight=80),
    )

    with pytest.raises(grpc.RpcError) as raised:
        runner_pb2_grpc.WorkflowRunnerStub(channel).Run(request, metadata=metadata)

    assert raised.value.code() == code
    if case == "bad input":
        assert "height" in raised.value.details()


def test_health_and_reflection(stack: Stack) -> None:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="flowport.v1.WorkflowRunner")
        )
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(
            reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        )

    assert health.status == health_pb2.HealthCheckResponse.SERVING
    names = {service.name for service in answers[0].list_services_response.service}
    assert {"flowport.v1.WorkflowRunner", "flowport.v1.ApiKeys", "flowport.v1.Workflows"} <= names
