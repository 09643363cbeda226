"""A scripted OpenAI-compatible chat server on a real socket, for sync and async tests;
`python -m tests.fakes.fake_llm` runs it as a process of its own."""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.threaded_server import ThreadedServer


@dataclass
class _Reply:
    tokens: list[str] | None  # None: echo the last user message
    reasoning: list[str] = field(default_factory=list)
    delay_s: float = 0.0
    status: int = 200
    first_token_delay_s: float = 0.0
    pause_after: int | None = None
    failures: int | None = None  # how many more requests `status` answers; None: all
    error_after: int | None = None
    error_data: str | None = None
    # Set by release(); created unbound, asyncio binds it to the fake's loop on first wait.
    gate: asyncio.Event = field(default_factory=asyncio.Event)


class FakeLlm(ThreadedServer):
    """Serves `POST /v1/chat/completions`, streaming (SSE) or not, on 127.0.0.1.

    Runs its own event loop in a daemon thread, so a test's loop (or none) is free.
    A stream asked for `stream_options.include_usage` ends, as OpenAI's does, with a chunk
    of no choices and the usage: a prompt token per character of the messages, a
    completion token per chunk, the reasoning chunks as reasoning tokens.
    Records every request body (`requests`) and its headers (`request_headers`), when each token chunk was written
    (`token_times`, time.time()) and clients that went away mid-stream (`disconnects`).

    Another process scripts it through the control routes under `/_fake/`
    (tests/fakes/fake_llm_process.py): `POST reply` (a JSON object of `set_reply`'s
    arguments), `POST reset`, `POST release`, and `GET record` (requests, token_times,
    disconnects).
    """

    thread_name = "fake-llm"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._disconnected = threading.Condition(self._lock)
        self._written = threading.Condition(self._lock)
        self._reply = _Reply(tokens=None)
        self._requests: list[dict[str, Any]] = []
        self._request_headers: list[dict[str, str]] = []
        self._token_times: list[float] = []
        self._disconnects = 0
        self.base_url = ""

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> str:
        """Starts the server on a free port; returns its base URL (ending in /v1)."""
        self.base_url = f"http://127.0.0.1:{self.start_server()}/v1"
        return self.base_url

    # -- script ----------------------------------------------------------------------

    def set_reply(
        self,
        tokens: list[str] | None,
        reasoning: list[str] | None = None,
        delay_s: float = 0.0,
        status: int = 200,
        first_token_delay_s: float = 0.0,
        pause_after: int | None = None,
        failures: int | None = None,
        error_after: int | None = None,
        error_data: str | None = None,
    ) -> None:
        """Scripts every following reply: `reasoning` chunks, then `tokens` (None: echo the
        last user message), `delay_s` apart.

        `status` other than 200 answers with an OpenAI-style error instead: every request,
        or with `failures=n` the next n only (a provider that recovers). With
        `pause_after=n` the stream stops after n chunks until `release()`; a test uses
        it to act while the model is provably mid-answer. With `error_after=n` the stream
        ends after n chunks with an event of `error_data` (default: an OpenAI-style error
        object, as OpenAI fails a stream that has begun).
        """
        self.release()  # never strand a stream held by the previous script
        with self._lock:
            self._reply = _Reply(
                tokens=None if tokens is None else list(tokens),
                reasoning=list(reasoning or []),
                delay_s=delay_s,
                status=status,
                first_token_delay_s=first_token_delay_s,
                pause_after=pause_after,
                failures=failures,
                error_after=error_after,
                error_data=error_data,
            )

    def reset(self) -> None:
        """Back to echoing, with nothing recorded: a test starts from a clean fake."""
        self.release()
        with self._lock:
            self._reply = _Reply(tokens=None)
            self._requests.clear()
            self._request_headers.clear()
            self._token_times.clear()
            self._disconnects = 0

    def release(self) -> None:
        """Lets streams held by `pause_after` go on."""
        with self._lock:
            gate = self._reply.gate
        self.call_soon(gate.set)

    # -- what happened ---------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """Each request's headers (names in lower case), in the order of `requests`."""
        with self._lock:
            return list(self._request_headers)

    @property
    def token_times(self) -> list[float]:
        with self._lock:
            return list(self._token_times)

    @property
    def disconnects(self) -> int:
        with self._lock:
            return self._disconnects

    def wait_for_tokens(self, count: int, timeout: float = 5.0) -> bool:
        """Blocks until `count` tokens were written (async tests: asyncio.to_thread)."""
        with self._written:
            return self._written.wait_for(lambda: len(self._token_times) >= count, timeout)

    def wait_for_disconnect(self, timeout: float = 5.0) -> bool:
        """Blocks until a client has gone away mid-stream (async tests: asyncio.to_thread)."""
        with self._disconnected:
            return self._disconnected.wait_for(lambda: self._disconnects > 0, timeout)

    # -- server ----------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        # A prefix outside /v1, so no OpenAI path can ever clash with it.
        app.router.add_post("/_fake/reply", self._control_reply)
        app.router.add_post("/_fake/reset", self._control_reset)
        app.router.add_post("/_fake/release", self._control_release)
        app.router.add_get("/_fake/record", self._control_record)

    async def _control_reply(self, request: web.Request) -> web.Response:
        try:
            self.set_reply(**await request.json())
        except TypeError as error:  # an unknown or missing argument
            raise web.HTTPBadRequest(text=str(error)) from error
        return web.Response(status=204)

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(status=204)

    async def _control_release(self, request: web.Request) -> web.Response:
        self.release()
        return web.Response(status=204)

    async def _control_record(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": self.requests,
                "token_times": self.token_times,
                "disconnects": self.disconnects,
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            self._requests.append(body)
            self._request_headers.append({k.lower(): v for k, v in request.headers.items()})
            reply = self._reply
            failing = reply.status != 200 and reply.failures != 0
            if failing and reply.failures is not None:
                reply.failures -= 1
        if failing:
            # retry-after-ms (OpenAI sends it too) keeps the client's retries fast.
            return web.json_response(
                {"error": {"message": "fake failure", "type": "server_error", "code": None}},
                status=reply.status,
                headers={"retry-after-ms": "1"},
            )
        tokens = reply.tokens if reply.tokens is not None else _echo(body)
        chunks = [{"reasoning_content": r, "content": None} for r in reply.reasoning]
        chunks += [{"content": t} for t in tokens]
        if reply.error_after is not None:
            chunks = chunks[: reply.error_after]
        model = str(body.get("model", "fake"))
        if not body.get("stream"):
            return web.json_response(_completion(model, reply.reasoning, tokens))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        try:
            await asyncio.sleep(reply.first_token_delay_s)
            for index, delta in enumerate(chunks):
                if index and reply.delay_s:
                    await asyncio.sleep(reply.delay_s)
                if reply.pause_after is not None and index == reply.pause_after:
                    await reply.gate.wait()
                # Recorded before the write, so a client never holds a token the fake
                # has not counted yet.
                with self._written:
                    self._token_times.append(time.time())
                    self._written.notify_all()
                await response.write(_sse(_chunk(model, {"role": "assistant", **delta})))
            if reply.error_after is not None:
                data = reply.error_data or json.dumps(_STREAM_ERROR)
                await response.write(f"data: {data}\n\n".encode())
                await response.write_eof()
                return response
            await response.write(_sse(_chunk(model, {}, finish_reason="stop")))
            if (body.get("stream_options") or {}).get("include_usage"):
                # As OpenAI does: one more chunk, with no choices, carrying the usage.
                await response.write(_sse(_usage_chunk(model, _usage(body, reply))))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionError):
            with self._disconnected:
                self._disconnects += 1
                self._disconnected.notify_all()
            raise
        return response


_STREAM_ERROR = {
    "error": {
        "message": "The server had an error while processing your request.",
        "type": "server_error",
    }
}


def _echo(body: dict[str, Any]) -> list[str]:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    text = str(users[-1]["content"]) if users else ""
    step = max(1, -(-len(text) // 3))  # at most three chunks
    return ["echo: ", *(text[i : i + step] for i in range(0, len(text), step))]


def _chunk(
    model: str, delta: dict[str, Any], *, finish_reason: str | None = None
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        "usage": None,
    }


def _usage(body: dict[str, Any], reply: _Reply) -> dict[str, Any]:
    """Scripted counts: a prompt token per character, a completion token per chunk."""
    prompt = sum(len(str(m.get("content", ""))) for m in body["messages"])
    tokens = reply.tokens if reply.tokens is not None else _echo(body)
    completion = len(reply.reasoning) + len(tokens)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": len(reply.reasoning)},
    }


def _usage_chunk(model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage,
    }


def _completion(model: str, reasoning: list[str], tokens: list[str]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(tokens)}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": len(tokens), "total_tokens": 0},
    }


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def main() -> None:
    """Serves until SIGTERM or SIGINT; the first line on stdout is the base URL."""
    # Every stream is a socket: the bench's 1,000 at once need more than a default soft limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with FakeLlm() as fake:
        print(fake.base_url, flush=True)
        # The main thread only waits: the server's thread has the GIL to itself.
        stop.wait()


if __name__ == "__main__":
    main()
