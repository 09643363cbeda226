"""Code that calls a published workflow, as printed: curl, Python (httpx), JavaScript (fetch)
and gRPC (Python, with Flowport's generated stubs). The key is never in it: every snippet reads
FLOWPORT_API_KEY from the environment, and the address FLOWPORT_URL (FLOWPORT_GRPC_TARGET for
gRPC), defaulting to this service's own."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flowport.engine import InputSpec
from flowport.settings import Settings

LANGS = ("curl", "python", "javascript", "grpc")
# A value of each input type that passes validation, for inputs without a default.
EXAMPLES: dict[str, Any] = {
    "text": "hello",
    "number": 1,
    "boolean": True,
    "image": "https://example.com/image.png",
    "file": "https://example.com/file.pdf",
    "object": {},
}


@dataclass(frozen=True, slots=True)
class Snippet:
    lang: str
    code: str


def public_address(settings: Settings) -> tuple[str, str]:
    """The REST base URL and the gRPC target clients reach this service at, as configured: a
    wildcard host is reached on loopback from the same machine."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings.tls_cert is not None else "http"
    return f"{scheme}://{host}:{settings.http_port}", f"{host}:{settings.http_port}"


def example_input(specs: Sequence[InputSpec]) -> dict[str, Any]:
    """An input the workflow accepts: each input's default, else a value of its type."""
    example: dict[str, Any] = {}
    for spec in specs:
        value = spec.default if spec.default is not None else EXAMPLES[spec.type]
        if isinstance(value, str) and spec.max_length is not None:
            value = value[: spec.max_length]
        example[spec.name] = value
    return example


def snippets(
    workflow_id: str, specs: Sequence[InputSpec], settings: Settings, langs: Sequence[str] = LANGS
) -> list[Snippet]:
    base_url, target = public_address(settings)
    example = example_input(specs)
    write = {"curl": _curl, "python": _python, "javascript": _javascript, "grpc": _grpc}
    tls = settings.tls_cert is not None
    address = {"grpc": target}
    return [
        Snippet(lang, write[lang](workflow_id, example, address.get(lang, base_url), tls))
        for lang in langs
    ]


def _curl(workflow_id: str, example: dict[str, Any], base_url: str, tls: bool) -> str:
    body = json.dumps({"input": example}, ensure_ascii=False).replace("'", "'\\''")
    return (
        f'curl -sS --fail-with-body -X POST "${{FLOWPORT_URL:-{base_url}}}'
        f'/v1/api/workflow/run/{workflow_id}" \\\n'
        '  -H "X-API-KEY: $FLOWPORT_API_KEY" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d '{body}'\n"
    )


def _python(workflow_id: str, example: dict[str, Any], base_url: str, tls: bool) -> str:
    return f'''import os

import httpx

base_url = os.environ.get("FLOWPORT_URL", "{base_url}")
response = httpx.post(
    f"{{base_url}}/v1/api/workflow/run/{workflow_id}",
    headers={{"X-API-KEY": os.environ["FLOWPORT_API_KEY"]}},
    json={{"input": {example!r}}},
    timeout=120,
)
response.raise_for_status()
print(response.json()["output"])
'''


def _javascript(workflow_id: str, example: dict[str, Any], base_url: str, tls: bool) -> str:
    body = json.dumps({"input": example}, ensure_ascii=False)
    return f"""// Node 18 or later: fetch is built in.
const baseUrl = process.env.FLOWPORT_URL ?? "{base_url}";

async function main() {{
  const response = await fetch(`${{baseUrl}}/v1/api/workflow/run/{workflow_id}`, {{
    method: "POST",
    headers: {{
      "X-API-KEY": process.env.FLOWPORT_API_KEY,
      "Content-Type": "application/json",
    }},
    body: JSON.stringify({body}),
  }});
  const answer = await response.json();
  if (!response.ok) throw new Error(`${{answer.code}}: ${{answer.message}}`);
  console.log(answer.output);
}}

main().catch((error) => {{
  console.error(error.message);
  process.exit(1);
}});
"""


def _grpc(workflow_id: str, example: dict[str, Any], target: str, tls: bool) -> str:
    channel = (
        "grpc.secure_channel(target, grpc.ssl_channel_credentials())"
        if tls
        else "grpc.insecure_channel(target)"
    )
    return f'''# The stubs come with Flowport's Python package (flowport.v1); other languages
# generate theirs from proto/flowport/v1/*.proto. Envoy's port speaks gRPC and REST.
import os

import grpc
from google.protobuf import json_format, struct_pb2

from flowport.v1 import runner_pb2, runner_pb2_grpc

target = os.environ.get("FLOWPORT_GRPC_TARGET", "{target}")
request = runner_pb2.RunRequest(
    workflow_id="{workflow_id}",
    input=json_format.ParseDict({example!r}, struct_pb2.Struct()),
)
with {channel} as channel:
    answer = runner_pb2_grpc.WorkflowRunnerStub(channel).Run(
        request, metadata=[("x-api-key", os.environ["FLOWPORT_API_KEY"])]
    )
print(answer.output)
'''
