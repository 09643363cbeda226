"""Image and file inputs by URL: files fetched for templates, every unsafe URL a clear 400."""

from __future__ import annotations

import pytest

from tests.fakes.fake_http import FakeHttp
from tests.integration.client import Api
from tests.integration.conftest import FETCH_MAX_BYTES

FILE_WORKFLOW = {
    "name": "Shout the file",
    "nodes": [
        {
            "id": "start",
            "type": "in",
            "inputs": [{"name": "doc", "type": "file", "required": True}],
        },
        {
            "id": "shout",
            "type": "template",
            "template": "{{ doc.text | upper }} ({{ doc.size }} bytes)",
        },
        {"id": "end", "type": "out", "output": "{{ shout.output }}"},
    ],
    "edges": [{"from": "start", "to": "shout"}, {"from": "shout", "to": "end"}],
}
IMAGE_WORKFLOW = {
    "name": "Image check",
    "nodes": [
        {"id": "start", "type": "in", "inputs": [{"name": "input_image", "type": "image"}]},
        {"id": "end", "type": "out", "output": "got {{ input_image }}"},
    ],
    "edges": [{"from": "start", "to": "end"}],
}


def test_a_file_is_fetched_and_its_text_reaches_templates(api: Api, fake_http: FakeHttp) -> None:
    workflow_id = api.publish(FILE_WORKFLOW)
    url = fake_http.url("/text")

    response = api.run(workflow_id, {"doc": url})

    assert response.status_code == 200, response.text
    assert response.json()["output"] == "PLAIN TEXT (10 bytes)"
    # The run's record keeps what the caller sent: the URL.
    assert api.get(f"/v1/runs/{response.json()['run_id']}").json()["inputs"] == {"doc": url}


def test_linkai_input_file_fills_the_file_input(api: Api, fake_http: FakeHttp) -> None:
    workflow_id = api.publish(FILE_WORKFLOW)

    response = api.post(
        "/v1/workflow/run",
        {"app_code": workflow_id, "args": {"input_file": fake_http.url("/text")}},
    )

    assert response.json()["data"]["output_text"] == "PLAIN TEXT (10 bytes)"


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://10.1.2.3/secret.txt", "is a private address"),
        ("http://169.254.169.254/latest/meta-data", "is a link-local address"),
        ("ftp://example.com/file.txt", "http"),
        ("file:///etc/passwd", "http"),
    ],
)
def test_unsafe_urls_are_refused_before_any_request(api: Api, url: str, named: str) -> None:
    workflow_id = api.publish(FILE_WORKFLOW)

    response = api.run(workflow_id, {"doc": url})

    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert message.startswith("input.doc: ")
    assert named in message


@pytest.mark.parametrize(
    ("path", "named"),
    [
        (f"/big/{FETCH_MAX_BYTES + 1}", "larger than"),
        ("/hang", "timed out"),
        ("/status/404", "answered 404"),
    ],
)
def test_files_too_large_too_slow_or_missing_are_400(
    api: Api, fake_http: FakeHttp, path: str, named: str
) -> None:
    workflow_id = api.publish(FILE_WORKFLOW)

    response = api.run(workflow_id, {"doc": fake_http.url(path)})

    assert response.status_code == 400, response.text
    assert named in response.json()["message"]
    # The service keeps serving.
    assert api.run(workflow_id, {"doc": fake_http.url("/text")}).status_code == 200


def test_image_urls_pass_the_same_guard(api: Api) -> None:
    workflow_id = api.publish(IMAGE_WORKFLOW)

    refused = api.run(workflow_id, {"input_image": "http://192.168.1.10/cat.png"})
    accepted = api.run(workflow_id, {"input_image": "http://127.0.0.1:9/cat.png"})

    assert refused.status_code == 400
    assert "input.input_image" in refused.json()["message"]
    assert accepted.json()["output"] == "got http://127.0.0.1:9/cat.png"


def test_linkai_input_image_reaches_the_llm_as_an_image_part(api: Api, fake_llm) -> None:
    workflow_id = api.publish(
        {
            "name": "Look",
            "nodes": [
                {
                    "id": "start",
                    "type": "in",
                    "inputs": [
                        {"name": "input_text", "type": "text", "required": True},
                        {"name": "input_image", "type": "image"},
                    ],
                },
                {"id": "look", "type": "llm", "prompt": "{{ input_text }}"},
                {"id": "end", "type": "out", "output": "{{ look.output }}"},
            ],
            "edges": [{"from": "start", "to": "look"}, {"from": "look", "to": "end"}],
        }
    )
    image = "http://127.0.0.1:9/cat.png"

    response = api.post(
        "/v1/workflow/run",
        {"app_code": workflow_id, "args": {"input_text": "what is this?", "input_image": image}},
    )

    assert response.status_code == 200, response.text
    assert fake_llm.requests[-1]["messages"][-1]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": image}},
    ]
