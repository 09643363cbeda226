"""A small REST client for the tests: what a user's code would do with httpx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import httpx_sse

LINKAI_ROUTE = "/v1/workflow/run"


class Api:
    def __init__(self, base_url: str, key: str, *, account: str = "", **http: Any) -> None:
        """`http`: more of httpx.Client's arguments (`verify`, `http2`)."""
        self.key = key
        self.account = account
        self.http = httpx.Client(base_url=base_url, timeout=60, **http)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-KEY": self.key}

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", self.headers)
        return self.http.post(path, json=body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", self.headers)
        return self.http.get(path, **kwargs)

    def linkai(self, body: Any, key: str | None = None) -> httpx.Response:
        """LinkAI's route, with the key as LinkAI's examples send it; bytes are sent as they are."""
        headers = {"Authorization": f"Bearer {key or self.key}"}
        if isinstance(body, bytes):
            return self.http.post(LINKAI_ROUTE, content=body, headers=headers)
        return self.http.post(LINKAI_ROUTE, json=body, headers=headers)

    def publish(self, definition: dict[str, Any]) -> str:
        """Creates and publishes a workflow; returns its id."""
        created = self.post("/v1/workflows", definition)
        assert created.status_code == 200, created.text
        workflow_id = created.json()["id"]
        published = self.post(f"/v1/workflows/{workflow_id}:publish", {})
        assert published.status_code == 200, published.text
        return workflow_id

    def run(
        self,
        workflow_id: str,
        input: dict[str, Any],
        *,
        headers: dict[str, str] | None = None,
        **body: Any,
    ) -> httpx.Response:
        """FlowAI's route, blocking; `body` adds fields next to `input`."""
        return self.post(
            f"/v1/api/workflow/run/{workflow_id}",
            {"input": input, **body},
            headers=headers if headers is not None else self.headers,
        )

    @contextmanager
    def stream(
        self,
        workflow_id: str,
        input: dict[str, Any],
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> Iterator[httpx_sse.EventSource]:
        """FlowAI's route, streamed; `extra` adds fields next to `input`."""
        body = {"input": input, "stream": True, **extra}
        with httpx_sse.connect_sse(
            self.http,
            "POST",
            f"/v1/api/workflow/run/{workflow_id}",
            json=body,
            headers=headers if headers is not None else self.headers,
        ) as source:
            yield source

    @contextmanager
    def run_events(
        self, run_id: str, *, last_event_id: int | None = None
    ) -> Iterator[httpx_sse.EventSource]:
        """`GET /v1/runs/{run_id}/events`, after `last_event_id` when given. Read it with
        `sse_frames`: httpx-sse turns the `: ping` comments after an id'd frame into
        empty events, which the SSE standard does not dispatch."""
        headers = dict(self.headers)
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        with httpx_sse.connect_sse(
            self.http, "GET", f"/v1/runs/{run_id}/events", headers=headers
        ) as source:
            yield source

    def stream_events(self, workflow_id: str, input: dict[str, Any]) -> list[tuple[str, Any]]:
        """Every SSE frame of a streamed run, as (event, parsed data)."""
        with self.stream(workflow_id, input) as source:
            assert source.response.status_code == 200, source.response.read()
            return [(sse.event, json.loads(sse.data)) for sse in source.iter_sse()]


def linkai_failure(response: httpx.Response, code: int) -> str:
    """Asserts LinkAI's error envelope with the HTTP status equal to `code`; its message."""
    assert response.status_code == code, response.text
    body = response.json()
    assert list(body) == ["success", "code", "message", "data"]
    assert (body["success"], body["code"], body["data"]) == (False, code, None)
    assert not any(name.startswith("grpc-") for name in response.headers)
    return str(body["message"])


def sse_frames(source: httpx_sse.EventSource) -> Iterator[httpx_sse.ServerSentEvent]:
    """The events an SSE client dispatches: not the empty ones httpx-sse makes of a comment
    (a heartbeat) once an id was seen, which the standard drops (no data, no event)."""
    for sse in source.iter_sse():
        if sse.data or sse.event != "message":
            yield sse
