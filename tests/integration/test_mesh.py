"""Without the bundled Envoy: `flowport serve --no-envoy` is the gRPC service alone (health,
reflection, a drain on SIGTERM), and an Envoy of one's own, configured by
`flowport envoy-config`, gives the same REST/SSE surface in front of it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from google.protobuf import struct_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from flowport.demo import BMI, CHAT
from flowport.envoy import envoy_binary
from flowport.v1 import runner_pb2, runner_pb2_grpc
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api, linkai_failure
from tests.integration.stack import EnvoyFront, Stack, free_port, wait_for


def _grpc_only(data_dir: Path, llm_base_url: str) -> Stack:
    return Stack(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'flowport.db'}",
        llm_base_url=llm_base_url,
        envoy=False,
    )


@pytest.fixture(scope="module")
def mesh(
    tmp_path_factory: pytest.TempPathFactory, fake_llm_server: FakeLlm
) -> Iterator[tuple[Stack, EnvoyFront]]:
    """The service with --no-envoy, and a separate Envoy started from envoy-config's output."""
    data_dir = tmp_path_factory.mktemp("mesh")
    service = _grpc_only(data_dir / "service", fake_llm_server.base_url)
    service.start()
    front = EnvoyFront(service, data_dir / "envoy")
    try:
        front.start()
        yield service, front
    finally:
        front.stop()
        service.stop()


@pytest.fixture
def api(mesh: tuple[Stack, EnvoyFront]) -> Iterator[Api]:
    service, front = mesh
    account, key = service.create_key()
    with Api(front.base_url, key, account=account) as client:
        yield client


def test_no_envoy_serves_grpc_with_health_and_reflection_and_no_http(
    mesh: tuple[Stack, EnvoyFront],
) -> None:
    service, _ = mesh
    assert service.health() == "SERVING"
    with service.grpc_channel() as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for answer in answers for s in answer.list_services_response.service}
    assert {"flowport.v1.FlowAi", "grpc.health.v1.Health"} <= names
    # No Envoy of its own: nothing listens on the HTTP and admin ports it was given.
    for port in (service.http_port, service.admin_port):
        with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", port))
    lines = [line.split(": ", 1)[1] for line in service.log().splitlines() if ": " in line]
    assert f"gRPC service on 127.0.0.1:{service.grpc_port} (no Envoy: gRPC only)" in lines


def test_flowai_blocking_through_an_envoy_of_ones_own(api: Api) -> None:
    workflow_id = api.publish(BMI)

    response = api.run(workflow_id, {"height": "1.8", "weight": 75})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.content.startswith('{"output":"您的BMI值是23.15","total_time":'.encode())
    assert not any(name.startswith("grpc-") for name in response.headers)


def test_flowai_stream_through_an_envoy_of_ones_own(api: Api, fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(tokens=["嗯", ",", "在", "呢", "。"], delay_s=0.05)
    workflow_id = api.publish(CHAT)

    with api.stream(workflow_id, {"输入": "在吗?"}) as source:
        assert source.response.headers["content-type"] == "text/event-stream"
        frames = [(sse.event, json.loads(sse.data)) for sse in source.iter_sse()]

    assert frames[0] == (
        "msg",
        {"Node": "myinput", "Msg": "start", "Type": "start", "Data": {"输入": "在吗?"}},
    )
    assert [data["Content"] for event, data in frames if event == "stream"] == list("嗯,在呢。")
    assert frames[-1][0] == "output"
    assert frames[-1][1]["output"] == "嗯,在呢。"
    assert len(frames) == 13


def test_envoys_own_errors_keep_each_surfaces_body(api: Api) -> None:
    # Envoy's local replies come from local_reply_config, as in the bundled Envoy.
    linkai_failure(api.linkai({"app_code": "x", "args": {"text": "x" * 2_000_000}}), 413)
    too_big = api.post("/v1/api/workflow/run/wf", {"input": {"x": "y" * 1_100_000}})
    assert too_big.status_code == 413
    assert list(too_big.json()) == ["code", "message"]


def test_grpc_through_an_envoy_of_ones_own(api: Api, mesh: tuple[Stack, EnvoyFront]) -> None:
    _, front = mesh
    workflow_id = api.publish(BMI)
    values = struct_pb2.Struct()
    values.update({"height": "1.8", "weight": 75})
    with grpc.insecure_channel(front.target) as channel:
        answer = runner_pb2_grpc.WorkflowRunnerStub(channel).Run(
            runner_pb2.RunRequest(workflow_id=workflow_id, input=values),
            metadata=[("x-api-key", api.key)],
        )
    assert answer.output == "您的BMI值是23.15"


def test_the_filters_for_a_mesh_are_self_contained(
    api: Api, mesh: tuple[Stack, EnvoyFront], tmp_path: Path
) -> None:
    """http_filters.yaml and local_reply_config.yaml, pasted into an Envoy that has neither
    the Lua file nor the descriptor set (as a mesh's sidecar has not), give the same surface."""
    _, front = mesh
    written = front.write_config()
    assert [p.name for p in written] == [
        "envoy.yaml",
        "routes.yaml",
        "flowport.binpb",
        "flowport.lua",
        "console",
        "http_filters.yaml",
        "local_reply_config.yaml",
    ]
    bootstrap = yaml.safe_load((front.out / "envoy.yaml").read_text())
    http_port, admin_port = free_port(), free_port()
    listener = bootstrap["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = http_port
    bootstrap["admin"]["address"]["socket_address"]["port_value"] = admin_port
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    # A mesh's route config is its own, inline: the console's routes (files by name) are not
    # in it.
    route_config = yaml.safe_load((front.out / "routes.yaml").read_text())["resources"][0]
    del route_config["@type"]
    routes = route_config["virtual_hosts"][0]["routes"]
    routes[:] = [route for route in routes if "route" in route]
    del manager["rds"]
    manager["route_config"] = route_config
    manager["http_filters"] = yaml.safe_load((front.out / "http_filters.yaml").read_text())
    manager["local_reply_config"] = yaml.safe_load(
        (front.out / "local_reply_config.yaml").read_text()
    )
    assert "filename" not in json.dumps(manager)
    assert 'proto_descriptor"' not in json.dumps(manager)
    config = tmp_path / "sidecar.yaml"
    config.write_text(yaml.safe_dump(bootstrap))
    log = (tmp_path / "sidecar.log").open("ab")
    envoy = subprocess.Popen(
        [str(envoy_binary()), "-c", str(config), "--disable-hot-restart", "--concurrency", "1"],
        stdout=log,
        stderr=log,
    )
    try:
        base = f"http://127.0.0.1:{http_port}"

        def answers() -> bool:
            try:
                return httpx.get(f"{base}/v1/keys", timeout=1).status_code == 401
            except httpx.HTTPError:
                return False

        wait_for(answers, timeout_s=30, what="the assembled Envoy")
        with Api(base, api.key) as sidecar:
            answer = sidecar.run(sidecar.publish(BMI), {"height": "1.8", "weight": 75})
            assert answer.json()["output"] == "您的BMI值是23.15"
            too_big = {"app_code": "x", "args": {"text": "x" * 2_000_000}}
            linkai_failure(sidecar.linkai(too_big), 413)
    finally:
        envoy.terminate()
        envoy.wait(timeout=10)


def test_upstream_names_are_looked_up(mesh: tuple[Stack, EnvoyFront], tmp_path: Path) -> None:
    service, _ = mesh
    name = "flowport-grpc.default.svc.cluster.local"
    written = service.cli("envoy-config", "--out", str(tmp_path), "--upstream", f"{name}:50051")
    assert written.returncode == 0, written.stderr
    bootstrap = yaml.safe_load((tmp_path / "envoy.yaml").read_text())
    cluster = bootstrap["static_resources"]["clusters"][0]
    assert cluster["type"] == "STRICT_DNS"
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": name, "port_value": 50051}
    validated = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(tmp_path / "envoy.yaml")],
        capture_output=True,
        text=True,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr

    # --mount-dir: where the Envoy that reads envoy.yaml finds the other files (a volume).
    mounted = service.cli(
        "envoy-config", "--out", str(tmp_path), "--mount-dir", "/etc/flowport/envoy"
    )
    assert mounted.returncode == 0, mounted.stderr
    text = (tmp_path / "envoy.yaml").read_text()
    assert 'proto_descriptor: "/etc/flowport/envoy/flowport.binpb"' in text
    assert 'filename: "/etc/flowport/envoy/flowport.lua"' in text
    assert 'path: "/etc/flowport/envoy/routes.yaml"' in text
    routes = (tmp_path / "routes.yaml").read_text()
    assert 'filename: "/etc/flowport/envoy/console/console.js"' in routes
    assert (tmp_path / "console" / "index.html").is_file()


def test_an_envoy_of_ones_own_serves_the_console(mesh: tuple[Stack, EnvoyFront]) -> None:
    """`flowport envoy-config` writes the console's routes (routes.yaml) and files."""
    _, front = mesh
    page = httpx.get(f"{front.base_url}/console/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="console.js?v=' in page.text
    assert httpx.get(f"{front.base_url}/console").headers["location"].endswith("/console/")


def test_usage_errors(mesh: tuple[Stack, EnvoyFront]) -> None:
    service, _ = mesh
    both = service.cli("serve", "--no-envoy", "--workers", "2")
    assert both.returncode == 2
    assert "--no-envoy serves one process" in both.stderr
    bad = service.cli("envoy-config", "--out", "x", "--upstream", "no-port")
    assert bad.returncode == 2
    assert "'no-port' is not HOST:PORT" in bad.stderr


def test_migrate_brings_a_new_database_to_the_schema(tmp_path: Path) -> None:
    """What a Kubernetes migration Job runs: `flowport migrate`, then nothing else needed."""
    stack = _grpc_only(tmp_path, "http://127.0.0.1:1")
    migrated = stack.cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "database migrated" in migrated.stderr
    assert stack.cli("accounts", "set-credits", "acme", "5").returncode == 0


def test_sigterm_drains_the_grpc_only_service(tmp_path: Path, fake_llm: FakeLlm) -> None:
    service = _grpc_only(tmp_path / "service", fake_llm.base_url)
    service.start()
    front = EnvoyFront(service, tmp_path / "envoy")
    try:
        front.start()
        fake_llm.set_reply(tokens=["one ", "two ", "three"], pause_after=1)
        _, key = service.create_key()
        with Api(front.base_url, key) as api:
            workflow_id, bmi = api.publish(CHAT), api.publish(BMI)
            frames = []
            with api.stream(workflow_id, {"输入": "hi"}) as source:
                for sse in source.iter_sse():
                    frames.append((sse.event, json.loads(sse.data)))
                    if sse.event == "stream" and sum(e == "stream" for e, _ in frames) == 1:
                        assert service.process is not None
                        service.process.send_signal(signal.SIGTERM)
                        # Draining: no longer SERVING (NOT_SERVING, then new calls refused),
                        # so the Envoy in front sends no new work.
                        wait_for(lambda: service.health() != "SERVING", what="not SERVING")
                        wait_for(
                            lambda: api.run(bmi, {"height": 2, "weight": 80}).status_code == 503,
                            what="new runs to be refused",
                        )
                        fake_llm.release()
        assert frames[-1][0] == "output"
        assert frames[-1][1]["output"] == "one two three"
        assert service.process is not None
        assert service.process.wait(timeout=30) == 0
        assert "stopping: draining runs" in service.log()
    finally:
        front.stop()
        service.stop()
