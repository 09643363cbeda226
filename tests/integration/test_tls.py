"""TLS: HTTPS on Envoy's port (HTTP/2 by ALPN, HTTP/1.1 too), and mTLS between Envoy and the
service, which refuses any client without a certificate its CA signed. Certificates from
throwaway CAs (trustme): a public one for Envoy's port, an internal one for the mTLS, and a
stranger's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import trustme
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from flowport.demo import BMI, CHAT
from flowport.v1 import runner_pb2, runner_pb2_grpc
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import Api
from tests.integration.stack import EnvoyFront, Stack, consecutive_free_ports, trusting


@dataclass
class Pki:
    public_ca: Path  # what HTTPS clients trust
    internal_ca: Path  # FLOWPORT_GRPC_TLS_CA
    env: dict[str, str]  # every FLOWPORT_*TLS* variable, and Envoy's client certificate
    envoy_cert: bytes
    envoy_key: bytes
    stranger_cert: bytes  # signed by another CA
    stranger_key: bytes


def _write(folder: Path, name: str, blobs: list[trustme.Blob]) -> Path:
    path = folder / name
    path.write_bytes(b"".join(blob.bytes() for blob in blobs))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    public, internal, other = trustme.CA(), trustme.CA(), trustme.CA()
    site = public.issue_cert("127.0.0.1", "localhost")
    service = internal.issue_cert("127.0.0.1", "localhost")
    envoy = internal.issue_cert("flowport-envoy")
    stranger = other.issue_cert("flowport-envoy")
    return Pki(
        public_ca=_write(folder, "public-ca.pem", [public.cert_pem]),
        internal_ca=_write(folder, "internal-ca.pem", [internal.cert_pem]),
        env={
            "FLOWPORT_TLS_CERT": str(_write(folder, "site.pem", site.cert_chain_pems)),
            "FLOWPORT_TLS_KEY": str(_write(folder, "site.key", [site.private_key_pem])),
            "FLOWPORT_GRPC_TLS_CERT": str(_write(folder, "service.pem", service.cert_chain_pems)),
            "FLOWPORT_GRPC_TLS_KEY": str(_write(folder, "service.key", [service.private_key_pem])),
            "FLOWPORT_GRPC_TLS_CA": str(folder / "internal-ca.pem"),
            "FLOWPORT_ENVOY_CLIENT_CERT": str(_write(folder, "envoy.pem", envoy.cert_chain_pems)),
            "FLOWPORT_ENVOY_CLIENT_KEY": str(_write(folder, "envoy.key", [envoy.private_key_pem])),
        },
        envoy_cert=b"".join(blob.bytes() for blob in envoy.cert_chain_pems),
        envoy_key=envoy.private_key_pem.bytes(),
        stranger_cert=b"".join(blob.bytes() for blob in stranger.cert_chain_pems),
        stranger_key=stranger.private_key_pem.bytes(),
    )


def _envoys_credentials(pki: Pki) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki.internal_ca.read_bytes(),
        private_key=pki.envoy_key,
        certificate_chain=pki.envoy_cert,
    )


@pytest.fixture(scope="module")
def tls_stack(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, fake_llm_server: FakeLlm
) -> Iterator[Stack]:
    """Two workers behind Envoy: HTTPS outside, mTLS inside, health on plain ports."""
    data_dir = tmp_path_factory.mktemp("tls")
    stack = Stack(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'flowport.db'}",
        llm_base_url=fake_llm_server.base_url,
        workers=2,
        # Envoy binds its ports once both workers serve: below the ephemeral range, where no
        # outgoing connection takes them meanwhile.
        http_port=consecutive_free_ports(1),
        admin_port=consecutive_free_ports(1),
        tls_ca=pki.public_ca,
        grpc_credentials=_envoys_credentials(pki),
        extra_env={**pki.env, "FLOWPORT_HEALTH_PORT": str(consecutive_free_ports(2))},
    )
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture
def api(tls_stack: Stack) -> Iterator[Api]:
    account, key = tls_stack.create_key()
    with Api(tls_stack.base_url, key, account=account, verify=tls_stack.verify, http2=True) as a:
        yield a


def _values(**values: object) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def test_https_negotiates_http2_and_runs(api: Api) -> None:
    workflow_id = api.publish(BMI)

    response = api.run(workflow_id, {"height": "1.8", "weight": 75})

    assert response.http_version == "HTTP/2"
    assert response.status_code == 200, response.text
    assert response.content.startswith('{"output":"您的BMI值是23.15","total_time":'.encode())


def test_https_with_http1_too(tls_stack: Stack, api: Api) -> None:
    with httpx.Client(verify=tls_stack.verify) as client:
        response = client.get(f"{tls_stack.base_url}/v1/keys", headers=api.headers)
    assert response.http_version == "HTTP/1.1"
    assert response.status_code == 200, response.text


def test_https_refuses_clients_that_do_not_trust_its_certificate(tls_stack: Stack) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_stack.base_url}/v1/keys")


def test_sse_stream_over_https_http2(api: Api, fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(tokens=["嗯", ",", "在"], delay_s=0.02)
    workflow_id = api.publish(CHAT)

    with api.stream(workflow_id, {"输入": "在吗?"}) as source:
        assert source.response.http_version == "HTTP/2"
        frames = [(sse.event, json.loads(sse.data)) for sse in source.iter_sse()]

    assert [data["Content"] for event, data in frames if event == "stream"] == list("嗯,在")
    assert frames[-1][0] == "output"
    assert frames[-1][1]["output"] == "嗯,在"


def test_grpc_through_envoy_over_tls(api: Api, tls_stack: Stack, pki: Pki) -> None:
    workflow_id = api.publish(BMI)
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.public_ca.read_bytes())
    with grpc.secure_channel(tls_stack.envoy_target, credentials) as channel:
        answer = runner_pb2_grpc.WorkflowRunnerStub(channel).Run(
            runner_pb2.RunRequest(workflow_id=workflow_id, input=_values(height="1.8", weight=75)),
            metadata=[("x-api-key", api.key)],
        )
    assert answer.output == "您的BMI值是23.15"


def test_the_service_takes_a_client_certificate_its_ca_signed(
    api: Api, tls_stack: Stack, pki: Pki
) -> None:
    workflow_id = api.publish(BMI)
    with tls_stack.grpc_channel() as channel:
        answer = runner_pb2_grpc.WorkflowRunnerStub(channel).Run(
            runner_pb2.RunRequest(workflow_id=workflow_id, input=_values(height=2, weight=80)),
            metadata=[("x-api-key", api.key)],
        )
    assert answer.output == "您的BMI值是20.0"


def _health(channel: grpc.Channel) -> str:
    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


@pytest.mark.parametrize("client", ["plaintext", "no certificate", "a stranger's certificate"])
def test_the_service_refuses_clients_without_the_right_certificate(
    tls_stack: Stack, pki: Pki, client: str
) -> None:
    root = pki.internal_ca.read_bytes()
    if client == "plaintext":
        channel = grpc.insecure_channel(tls_stack.grpc_target)
    elif client == "no certificate":
        channel = grpc.secure_channel(
            tls_stack.grpc_target, grpc.ssl_channel_credentials(root_certificates=root)
        )
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=root,
            private_key=pki.stranger_key,
            certificate_chain=pki.stranger_cert,
        )
        channel = grpc.secure_channel(tls_stack.grpc_target, credentials)
    with channel, pytest.raises(grpc.RpcError) as refused:
        _health(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_health_port_is_plain_and_serves_health_only(tls_stack: Stack) -> None:
    first = int(tls_stack.extra_env["FLOWPORT_HEALTH_PORT"])
    for port in (first, first + 1):  # one per worker
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert _health(channel) == "SERVING"
    with grpc.insecure_channel(f"127.0.0.1:{first}") as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            list(
                reflection.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")])
                )
            )
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_an_envoy_of_ones_own_speaks_mtls_to_a_grpc_only_service(tmp_path: Path, pki: Pki) -> None:
    """The gateway's case: `serve --no-envoy` with mTLS, and `envoy-config` with Envoy's
    client certificate and the public HTTPS certificate."""
    service = Stack(
        data_dir=tmp_path / "service",
        database_url=f"sqlite:///{tmp_path / 'flowport.db'}",
        llm_base_url=None,
        envoy=False,
        grpc_credentials=_envoys_credentials(pki),
        extra_env=pki.env,
    )
    service.start()
    front = EnvoyFront(service, tmp_path / "envoy", tls_ca=pki.public_ca)
    try:
        front.start()
        _, key = service.create_key()
        with Api(front.base_url, key, verify=trusting(pki.public_ca), http2=True) as api:
            response = api.run(api.publish(BMI), {"height": "1.8", "weight": 75})
        assert response.http_version == "HTTP/2"
        assert response.json()["output"] == "您的BMI值是23.15"
    finally:
        front.stop()
        service.stop()


@pytest.mark.parametrize(
    ("unset", "message"),
    [
        (
            "FLOWPORT_ENVOY_CLIENT_CERT FLOWPORT_ENVOY_CLIENT_KEY",
            "the service requires client certificates (FLOWPORT_GRPC_TLS_CERT) but Envoy has "
            "none: set FLOWPORT_ENVOY_CLIENT_CERT and FLOWPORT_ENVOY_CLIENT_KEY",
        ),
        ("FLOWPORT_TLS_KEY", "FLOWPORT_TLS_CERT and FLOWPORT_TLS_KEY are set together"),
        ("FLOWPORT_GRPC_TLS_CA", "FLOWPORT_GRPC_TLS_CERT needs FLOWPORT_GRPC_TLS_CA"),
    ],
)
def test_incomplete_tls_settings_refuse_to_start(
    tmp_path: Path, pki: Pki, unset: str, message: str
) -> None:
    stack = Stack(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'flowport.db'}",
        llm_base_url=None,
        extra_env={k: v for k, v in pki.env.items() if k not in unset.split()},
    )
    started = stack.cli("serve")
    assert started.returncode == 1
    assert message in started.stderr
    assert "Traceback" not in started.stderr


def test_start_up_says_https_mtls_and_the_health_ports(tls_stack: Stack) -> None:
    health = int(tls_stack.extra_env["FLOWPORT_HEALTH_PORT"])
    lines = [line.split(": ", 1)[1] for line in tls_stack.log().splitlines() if ": " in line]
    assert f"REST and gRPC on https://127.0.0.1:{tls_stack.http_port} (Envoy)" in lines
    grpc_ports = f"{tls_stack.grpc_port}-{tls_stack.grpc_port + 1}"
    assert f"gRPC service on 127.0.0.1:{grpc_ports} (2 workers, mTLS)" in lines
    assert f"gRPC health alone, without TLS, on 127.0.0.1:{health}-{health + 1}" in lines
