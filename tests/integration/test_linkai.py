"""LinkAI's route through the real Envoy: the envelope, every error code, accounts,
credits, the content policy and session memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from flowport.demo import BMI, CHAT
from tests.fakes.fake_llm import FakeLlm
from tests.integration.client import LINKAI_ROUTE, Api, linkai_failure
from tests.integration.stack import Stack


def test_success_is_linkai_envelope(api: Api) -> None:
    app_code = api.publish(BMI)

    response = api.linkai({"app_code": app_code, "args": {"height": "1.8", "weight": "75"}})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["success", "code", "message", "data"]
    assert (body["success"], body["code"], body["message"]) == (True, 200, "success")
    assert list(body["data"]) == ["output_text", "session_id", "run_id"]
    assert body["data"]["output_text"] == "您的BMI值是23.15"
    assert response.content.startswith(
        '{"success":true,"code":200,"message":"success","data":{"output_text":"您的BMI值是23.15",'.encode()
    )
    assert api.get(f"/v1/runs/{body['data']['run_id']}").json()["status"] == "succeeded"


def test_linkai_python_example_works_unchanged(api: Api, stack: Stack) -> None:
    app_code = api.publish(BMI)
    # LinkAI's documented example, with only the URL, key and app code filled in.
    example = textwrap.dedent(
        f"""
        import requests

        url = "{stack.base_url}/v1/workflow/run"
        headers = {{
            "Content-Type": "application/json",
            "Authorization": "Bearer {api.key}"
        }}
        body = {{
            "app_code": "{app_code}",
            "args": {{
                "height": "1.8",
                "weight": "75"
            }}
        }}
        res = requests.post(url, json=body, headers=headers)
        if res.status_code == 200:
            res_json = res.json()
            reply_text = res_json.get("data").get("output_text")
            print(f"result={{reply_text}}")
        else:
            error = res.json()
            print(f"请求异常, 错误码={{error.get('code')}}, 错误信息={{error.get('message')}}")
        """
    )

    result = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=30
    )

    assert result.stdout.strip() == "result=您的BMI值是23.15", result.stderr


def test_linkai_curl_example_works_unchanged(api: Api, stack: Stack) -> None:
    app_code = api.publish(BMI)
    curl = f"""curl -X POST "{stack.base_url}/v1/workflow/run" \\
  -H "Content-Type: application/json" \\
  -H "authorization: Bearer {api.key}" \\
  -d '{{
    "app_code": "{app_code}",
    "args": {{
      "height": "1.8",
      "weight": "75"
    }}
  }}'"""

    result = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)

    assert json.loads(result.stdout)["data"]["output_text"] == "您的BMI值是23.15"


def test_400_names_what_is_wrong(api: Api) -> None:
    app_code = api.publish(BMI)

    assert "JSON" in linkai_failure(api.linkai(b"{oops"), 400)
    assert linkai_failure(api.linkai({"args": {}}), 400) == "app_code: required"
    assert "args" in linkai_failure(api.linkai({"app_code": app_code, "args": [1]}), 400)
    assert "weight" in linkai_failure(
        api.linkai({"app_code": app_code, "args": {"height": "1.8"}}), 400
    )
    bad_number = {"app_code": app_code, "args": {"height": "tall", "weight": "75"}}
    assert "height" in linkai_failure(api.linkai(bad_number), 400)


def test_401_for_missing_unknown_and_revoked_keys(api: Api) -> None:
    app_code = api.publish(BMI)
    body = {"app_code": app_code, "args": {"height": "1.8", "weight": "75"}}

    assert "missing" in linkai_failure(api.http.post(LINKAI_ROUTE, json=body), 401)
    assert linkai_failure(api.linkai(body, key="fp_" + "Z" * 32), 401) == "invalid API key"
    key = api.post("/v1/keys", {"name": "old", "scopes": ["run"]}).json()
    api.http.delete(f"/v1/keys/{key['id']}", headers=api.headers)
    assert linkai_failure(api.linkai(body, key=key["key"]), 401) == "invalid API key"


def test_402_for_an_unknown_app_code(api: Api) -> None:
    assert "wf_nope" in linkai_failure(api.linkai({"app_code": "wf_nope"}), 402)


def test_403_for_another_accounts_private_app_and_public_apps_run(api: Api, stack: Stack) -> None:
    private = api.publish(BMI)
    public = api.publish({**BMI, "visibility": "public"})
    _, other = stack.create_key(scopes=("run",))
    args = {"height": "1.8", "weight": "75"}

    assert "private" in linkai_failure(
        api.linkai({"app_code": private, "args": args}, key=other), 403
    )
    assert api.linkai({"app_code": public, "args": args}, key=other).status_code == 200


def test_408_for_a_key_without_the_run_scope(api: Api, stack: Stack) -> None:
    app_code = api.publish(BMI)
    _, admin_only = stack.create_key(account=api.account, scopes=("admin",))

    message = linkai_failure(api.linkai({"app_code": app_code}, key=admin_only), 408)

    assert "run scope" in message


def test_406_when_credits_are_used_up_and_the_last_one_is_spent_once(
    api: Api, stack: Stack
) -> None:
    app_code = api.publish(BMI)
    body = {"app_code": app_code, "args": {"height": "1.8", "weight": "75"}}
    assert stack.cli("accounts", "set-credits", api.account, "1").returncode == 0

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(pool.map(lambda _: api.linkai(body).status_code, range(6)))

    assert statuses == [200, 406, 406, 406, 406, 406]
    assert "credits" in linkai_failure(api.linkai(body), 406)
    # FlowAI's route spends the same credits: 402 Payment Required there.
    assert api.run(app_code, {"height": 1.8, "weight": 75}).status_code == 402
    stack.cli("accounts", "set-credits", api.account, "unlimited")
    assert api.linkai(body).status_code == 200


def test_409_for_blocked_input_and_output(api: Api, fake_llm: FakeLlm) -> None:
    app_code = api.publish(CHAT)

    message = linkai_failure(
        api.linkai({"app_code": app_code, "args": {"输入": "say forbiddenword"}}), 409
    )
    assert message == "input.输入: blocked by the content policy"

    fake_llm.set_reply(tokens=["this is ", "禁", "词 ok"])
    linkai_failure(api.linkai({"app_code": app_code, "args": {"输入": "hello"}}), 409)


def test_blocked_output_stops_a_flowai_stream_with_an_error_frame(
    api: Api, fake_llm: FakeLlm
) -> None:
    fake_llm.set_reply(tokens=["fine ", "then ", "forbidden", "word", " after"])
    workflow_id = api.publish(CHAT)

    frames = api.stream_events(workflow_id, {"输入": "hi"})

    streamed = "".join(data["Content"] for event, data in frames if event == "stream")
    assert "forbiddenword" not in streamed
    assert frames[-1][0] == "error"
    assert frames[-1][1]["code"] == 409
    assert frames[-1][1]["Node"] == "1741675999864"


def test_429_with_retry_after_when_a_key_goes_too_fast(api: Api) -> None:
    app_code = api.publish(BMI)
    body = {"app_code": app_code, "args": {"height": "1.8", "weight": "75"}}

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: api.linkai(body), range(40)))

    limited = [r for r in responses if r.status_code == 429]
    assert limited, [r.status_code for r in responses]
    assert int(limited[0].headers["retry-after"]) >= 1
    assert "rate limited" in linkai_failure(limited[0], 429)
    assert {r.status_code for r in responses} <= {200, 429}


def test_503_when_the_llm_provider_fails(api: Api, fake_llm: FakeLlm) -> None:
    fake_llm.set_reply(tokens=[], status=500)
    app_code = api.publish(CHAT)

    message = linkai_failure(api.linkai({"app_code": app_code, "args": {"输入": "hi"}}), 503)

    assert "LLM provider failed" in message


def test_body_over_the_limit_is_413_in_the_envelope(api: Api) -> None:
    response = api.linkai({"app_code": "x", "args": {"text": "x" * 2_000_000}})

    linkai_failure(response, 413)


def test_input_text_fills_the_workflows_text_input(api: Api, fake_llm: FakeLlm) -> None:
    app_code = api.publish(CHAT)  # its text input is named 输入

    response = api.linkai(
        {"app_code": app_code, "args": {"input_text": "hello there", "input_image": ""}}
    )

    assert response.status_code == 200, response.text
    assert fake_llm.requests[-1]["messages"][-1] == {"role": "user", "content": "hello there"}
    assert response.json()["data"]["output_text"].startswith("echo: ")


def test_session_memory_reaches_the_llm_per_account(
    api: Api, stack: Stack, fake_llm: FakeLlm
) -> None:
    app_code = api.publish({**CHAT, "visibility": "public"})

    first = api.linkai({"app_code": app_code, "args": {"输入": "my name is Ada"}}).json()["data"]
    session_id = first["session_id"]
    assert session_id
    second = api.linkai(
        {"app_code": app_code, "args": {"输入": "what is my name?"}, "session_id": session_id}
    )

    assert second.json()["data"]["session_id"] == session_id
    seen = fake_llm.requests[-1]["messages"]
    assert seen[1:] == [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": first["output_text"]},
        {"role": "user", "content": "what is my name?"},
    ]
    # Another account using the same session id sees nothing of it.
    _, other = stack.create_key(scopes=("run",))
    api.linkai({"app_code": app_code, "args": {"输入": "hi"}, "session_id": session_id}, key=other)
    assert [m["role"] for m in fake_llm.requests[-1]["messages"]] == ["system", "user"]


def test_flowai_route_continues_a_session_too(api: Api, fake_llm: FakeLlm) -> None:
    workflow_id = api.publish(CHAT)

    first = api.run(workflow_id, {"输入": "remember 42"})
    session_id = first.headers["x-session-id"]
    api.run(workflow_id, {"输入": "what number?"}, session_id=session_id)

    contents = [m["content"] for m in fake_llm.requests[-1]["messages"][1:]]
    assert contents == ["remember 42", first.json()["output"], "what number?"]


@pytest.mark.parametrize("surface", ["flowai", "grpc"])
def test_rate_limit_on_other_surfaces(api: Api, stack: Stack, surface: str) -> None:
    import grpc

    from flowport.v1 import keys_pb2, keys_pb2_grpc

    if surface == "flowai":
        workflow_id = api.publish(BMI)
        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(
                pool.map(lambda _: api.run(workflow_id, {"height": 2, "weight": 80}), range(40))
            )
        limited = [r for r in codes if r.status_code == 429]
        assert limited and int(limited[0].headers["retry-after"]) >= 1
        assert limited[0].json()["code"] == 429
        return
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = keys_pb2_grpc.ApiKeysStub(channel)
        metadata = [("x-api-key", api.key)]
        errors = []
        for _ in range(40):
            try:
                stub.ListApiKeys(keys_pb2.ListApiKeysRequest(), metadata=metadata)
            except grpc.RpcError as error:
                errors.append(error)
    assert errors and errors[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ("retry-after", "1") in errors[0].trailing_metadata()
