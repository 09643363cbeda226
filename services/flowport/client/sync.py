"""The blocking client."""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from datetime import datetime
from typing import Any

import httpx
import httpx_sse
from tenacity import Retrying, retry_if_result, wait_fixed

from flowport.client import calls
from flowport.client.calls import Call
from flowport.client.models import (
    Accepted,
    ApiKey,
    Event,
    NewApiKey,
    Published,
    Run,
    RunResult,
    Workflow,
    is_last,
)
from flowport.client.retries import RetryPolicy, repeatable

log = logging.getLogger("flowport.client")


class Client:
    """Flowport's REST API over httpx, blocking.

    `base_url` and `api_key` default to the environment's FLOWPORT_URL and FLOWPORT_KEY.
    `http` is an httpx.Client of your own (proxies, TLS, event hooks); the client closes
    only one it made.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float = calls.DEFAULT_TIMEOUT,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url, key = calls.base_url_and_key(base_url, api_key)
        self.retry = retry or RetryPolicy()
        self._headers = {"X-API-KEY": key}
        self._own_http = http is None
        self._http = http or httpx.Client(timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    # -- runs ----------------------------------------------------------------------------

    def run(
        self,
        workflow_id: str,
        input: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        idempotent: bool = False,
    ) -> RunResult:
        """Runs the workflow's newest version to its end. Retried on a transient failure
        only under an Idempotency-Key: `idempotency_key`, or one made for `idempotent`."""
        call = calls.run_call(
            workflow_id,
            input,
            mode="blocking",
            session_id=session_id,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
        )
        return calls.run_result(self._send(call))

    def stream(
        self,
        workflow_id: str,
        input: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        idempotent: bool = False,
    ) -> EventStream:
        """Runs the workflow, its events as they happen. A connection that drops mid-run
        is followed up on the run's events from the frame after the last one received."""
        call = calls.run_call(
            workflow_id,
            input,
            mode="stream",
            session_id=session_id,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
        )
        return EventStream(self, call, None, 0)

    def start(
        self,
        workflow_id: str,
        input: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        idempotent: bool = False,
    ) -> Accepted:
        """Queues a background run ("mode": "async") and answers at once."""
        call = calls.run_call(
            workflow_id,
            input,
            mode="async",
            session_id=session_id,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
        )
        return Accepted.model_validate(self._send(call).json())

    def wait(self, run_id: str, *, follow: bool = True, poll_s: float = 0.5) -> Run:
        """The run's record once it has ended: by following its events to the last frame
        (resumed after a drop), or, with `follow=False`, by asking every `poll_s`."""
        if follow:
            for _ in self.events(run_id):
                pass
            # The record may be written a moment after the last frame was sent.
            poll_s = min(poll_s, 0.1)
        polling = Retrying(
            retry=retry_if_result(lambda run: not run.ended), wait=wait_fixed(poll_s)
        )
        run: Run = polling(self.get_run, run_id)
        return run

    def events(self, run_id: str, *, after: int | None = None) -> EventStream:
        """A run's events from the start (or after frame `after`), followed to its end."""
        return EventStream(self, None, run_id, after or 0)

    def get_run(self, run_id: str) -> Run:
        return Run.model_validate(self._send(calls.get_run_call(run_id)).json())

    def cancel(self, run_id: str) -> Run:
        """Cancels the run and answers its record once it has stopped; 409 if it had ended."""
        return Run.model_validate(self._send(calls.cancel_call(run_id)).json())

    # -- keys ----------------------------------------------------------------------------

    def create_key(
        self,
        name: str,
        *,
        scopes: list[str] | None = None,
        expires_at: datetime | str | None = None,
        workflows: list[str] | None = None,
    ) -> NewApiKey:
        call = calls.create_key_call(name, scopes, expires_at, workflows)
        return NewApiKey.model_validate(self._send(call).json())

    def list_keys(self) -> list[ApiKey]:
        answer = self._send(Call("GET", "/v1/keys")).json()
        return [ApiKey.model_validate(key) for key in answer.get("keys", [])]

    def revoke_key(self, key_id: str) -> None:
        self._send(Call("DELETE", f"/v1/keys/{calls.segment(key_id)}"))

    def rotate_key(self, key_id: str, *, grace_s: int | None = None) -> NewApiKey:
        return NewApiKey.model_validate(self._send(calls.rotate_key_call(key_id, grace_s)).json())

    # -- workflows -----------------------------------------------------------------------

    def create_workflow(self, definition: dict[str, Any]) -> Workflow:
        return Workflow.model_validate(self._send(Call("POST", "/v1/workflows", definition)).json())

    def save_workflow(self, workflow_id: str, definition: dict[str, Any]) -> Workflow:
        call = Call("PUT", f"/v1/workflows/{calls.segment(workflow_id)}", definition)
        return Workflow.model_validate(self._send(call).json())

    def publish_workflow(self, workflow_id: str) -> Published:
        call = Call("POST", f"/v1/workflows/{calls.segment(workflow_id)}:publish", {})
        return Published.model_validate(self._send(call).json())

    def get_workflow(self, workflow_id: str) -> Workflow:
        call = Call("GET", f"/v1/workflows/{calls.segment(workflow_id)}")
        return Workflow.model_validate(self._send(call).json())

    def list_workflows(self) -> list[Workflow]:
        answer = self._send(Call("GET", "/v1/workflows")).json()
        return [Workflow.model_validate(w) for w in answer.get("workflows", [])]

    # -- transport -----------------------------------------------------------------------

    def _send(self, call: Call, *, stream: bool = False) -> httpx.Response:
        """The call's answer, retried as the policy allows; FlowportError if not 2xx. With
        `stream` the body is left unread (the caller closes the response)."""
        request = self._http.build_request(
            call.method,
            self.base_url + call.path,
            json=call.body,
            headers={**self._headers, **call.headers},
        )

        def attempt() -> httpx.Response:
            response = self._http.send(request, stream=stream)
            if stream and response.is_error:
                try:
                    response.read()
                finally:
                    response.close()
            return response

        retrying = Retrying(
            **self.retry.tenacity_kwargs(repeatable(call.method, call.headers, call.safe))
        )
        response: httpx.Response = retrying(attempt)
        calls.raise_for_status(response)
        return response


class EventStream:
    """A run's events, typed, iterated once; a context manager that closes the connection.

    `run_id` and `session_id` are known once the first event has come (from the answer's
    headers) or from the start (a run's events)."""

    def __init__(self, client: Client, call: Call | None, run_id: str | None, after: int):
        self.run_id = run_id
        self.session_id: str | None = None
        self._client = client
        self._frames = self._follow(call, after)

    def __iter__(self) -> Iterator[Event]:
        return self._frames

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._frames.close()

    def _follow(self, call: Call | None, last: int) -> Generator[Event, None, None]:
        # Drops in a row without a frame between them: a bound on reconnecting.
        drops = 0
        while True:
            if call is not None:
                response = self._client._send(call, stream=True)
                self.run_id = response.headers.get("x-run-id")
                self.session_id = response.headers.get("x-session-id")
                call = None
            else:
                assert self.run_id is not None
                response = self._client._send(calls.events_call(self.run_id, last), stream=True)
            try:
                try:
                    for sse in httpx_sse.EventSource(response).iter_sse():
                        event = calls.frame_event(sse, last)
                        if event is None:
                            continue
                        last, drops = event.id or last, 0
                        yield event
                        if is_last(event):
                            return
                    return
                finally:
                    response.close()
            except httpx.TransportError as error:
                drops += 1
                if self.run_id is None or drops >= self._client.retry.max_attempts:
                    raise
                log.info(
                    "run %s: the stream dropped (%r); resuming after frame %d",
                    self.run_id,
                    error,
                    last,
                )
