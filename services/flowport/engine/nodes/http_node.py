"""The `http` node: calls an external HTTP API through the SSRF guard, with retries."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field, field_validator
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

from flowport.engine.nodes.base import NodeConfig, NodeContext, NodeOutput
from flowport.errors import InvalidArgument, UpstreamFailed
from flowport.outbound import IDEMPOTENT, ConnectionFailed, FetchedResponse, redacted

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# 0.5 s, 1 s, 2 s, ... between attempts; tests replace it.
BACKOFF = wait_exponential(multiplier=0.5, max=8)
_MAX_ERROR_BODY = 200


class HttpNode(NodeConfig):
    """`output` is the response body as text; also `status`, `json` and `headers`."""

    type: Literal["http"]
    method: Method = "GET"
    url: str = Field(min_length=1)
    # Header name -> template of its value.
    headers: dict[str, str] = Field(default_factory=dict)
    # A template; with body_type json it must render to valid JSON (`{{ x | tojson }}`).
    body: str | None = None
    body_type: Literal["json", "text"] = "json"
    timeout_s: float = Field(default=10, gt=0, le=300)
    retries: int = Field(default=2, ge=0, le=10)
    # false: a 4xx/5xx answer is an output like any other, for a condition to look at.
    fail_on_status: bool = True

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, method: object) -> object:
        return method.upper() if isinstance(method, str) else method

    def template_sources(self) -> dict[str, str]:
        fields = {"url": self.url}
        fields.update({f"headers.{name}": value for name, value in self.headers.items()})
        if self.body is not None:
            fields["body"] = self.body
        return fields


async def run(node: HttpNode, ctx: NodeContext) -> NodeOutput:
    url = ctx.render("url")
    headers = {name: ctx.render(f"headers.{name}") for name in node.headers}
    content: str | None = None
    if node.body is not None:
        content = ctx.render("body")
        if node.body_type == "json":
            try:
                json.loads(content)
            except ValueError as exc:
                raise InvalidArgument(f"body is not valid JSON once rendered: {exc}") from None
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = (
                "application/json" if node.body_type == "json" else "text/plain; charset=utf-8"
            )
    # Header values and the query stay out of the run record: API keys go there.
    ctx.node_inputs = {"method": node.method, "url": redacted(url), "headers": sorted(headers)}

    # Repeating an idempotent request cannot do something twice, so only those are retried.
    attempts = 1 + (node.retries if node.method in IDEMPOTENT else 0)
    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=BACKOFF,
        retry=retry_if_exception_type(ConnectionFailed) | retry_if_result(_server_error),
        # Out of attempts: a 5xx answer is returned as it is, a connection error raised.
        retry_error_callback=_last_outcome,
        reraise=True,
    )
    response: FetchedResponse = await retrying(
        ctx.outbound.fetch,
        url,
        method=node.method,
        headers=headers,
        content=content,
        timeout_s=node.timeout_s,
    )
    if node.fail_on_status and not 200 <= response.status < 300:
        body = response.text.strip()
        if len(body) > _MAX_ERROR_BODY:
            body = body[:_MAX_ERROR_BODY] + "..."
        raise UpstreamFailed(
            f"{node.method} {redacted(url)} answered HTTP {response.status} {response.reason}"
            + (f": {body}" if body else "")
        )
    return {
        "output": response.text,
        "status": response.status,
        "json": response.json(),
        "headers": response.headers,
    }


def _server_error(response: FetchedResponse) -> bool:
    return response.status >= 500


def _last_outcome(state: RetryCallState) -> FetchedResponse:
    assert state.outcome is not None
    result: FetchedResponse = state.outcome.result()  # raises the last error, if one
    return result
