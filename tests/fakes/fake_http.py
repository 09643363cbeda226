"""A scripted HTTP API on 127.0.0.1 for http-node and fetch tests, on its own thread and loop."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from aiohttp import web

from tests.fakes.threaded_server import ThreadedServer


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str
    # The client's port: requests on one kept-alive connection share it.
    client_port: int = 0


class FakeHttp(ThreadedServer):
    """Routes (any method):

    - `/echo`: 200 with JSON {"method", "path", "query", "headers", "body"}
    - `/status/{code}`: that status, body "status <code>"
    - `/flaky/{n}`: 503 for the first n requests to that path, then 200 "ok"
    - `/big/{n}`: n bytes of "x", no Content-Length (chunked), so only reading finds out
    - `/text`: 200 text/plain "plain text"
    - `/say?text=...`: 200 text/plain, the query's text
    - `/hook/...`: 204, as a webhook receiver answers
    - `/redirect?to=URL`: 302 to URL
    - `/together`: waits until `together_parties` requests are inside at once (or release()),
      then 200 "together"; `max_in_flight` tells how many overlapped
    - `/hang`: never answers until release(); counts clients that leave (`disconnects`)

    Records every request in `requests`; `drop_connections()` closes every open
    connection, as a server does with idle kept-alive ones.
    """

    thread_name = "fake-http"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[Seen] = []
        self._counts: dict[str, int] = {}
        self._in_flight = 0
        self._max_in_flight = 0
        self._disconnects = 0
        self.together_parties = 2
        self._gate: asyncio.Event | None = None
        self._all_in: asyncio.Event | None = None
        self.base_url = ""
        self._transports: set[asyncio.BaseTransport] = set()

    def start(self) -> str:
        self.base_url = f"http://127.0.0.1:{self.start_server()}"
        return self.base_url

    def url(self, path: str) -> str:
        return self.base_url + path

    def reset(self) -> None:
        self.release()
        with self._lock:
            self._requests.clear()
            self._counts.clear()
            self._max_in_flight = 0
            self._disconnects = 0
            self.together_parties = 2
        self.run(self._new_gate())

    def drop_connections(self) -> None:
        """Closes every connection a request came on, and waits until that is done."""

        async def drop() -> None:
            for transport in self._transports:
                transport.close()
            self._transports.clear()

        self.run(drop())

    def release(self) -> None:
        """Lets `/together` and `/hang` requests answer."""
        if self._gate is not None:
            self.call_soon(self._gate.set)

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._requests)

    def wait_for_request(self, timeout: float = 5.0) -> bool:
        """Blocks until a request has arrived (async tests: asyncio.to_thread)."""
        with self._changed:
            return self._changed.wait_for(lambda: bool(self._requests), timeout)

    def wait_for_disconnect(self, timeout: float = 5.0) -> bool:
        """Blocks until a `/hang` client has gone away."""
        with self._changed:
            return self._changed.wait_for(lambda: self._disconnects > 0, timeout)

    @property
    def disconnects(self) -> int:
        """`/hang` requests whose client went away before release()."""
        with self._lock:
            return self._disconnects

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    async def _new_gate(self) -> None:
        self._gate = asyncio.Event()
        self._all_in = asyncio.Event()

    async def on_start(self) -> None:
        await self._new_gate()

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if transport is not None:
            self._transports.add(transport)
        seen = Seen(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            client_port=peer[1] if peer else 0,
        )
        with self._changed:
            self._requests.append(seen)
            self._changed.notify_all()
            self._counts[request.path] = self._counts.get(request.path, 0) + 1
            count = self._counts[request.path]
        parts = request.path.strip("/").split("/")
        match parts:
            case ["echo"]:
                return web.json_response(
                    {
                        "method": seen.method,
                        "path": seen.path,
                        "query": seen.query,
                        "headers": seen.headers,
                        "body": seen.body,
                    }
                )
            case ["status", code]:
                return web.Response(status=int(code), text=f"status {code}")
            case ["flaky", n]:
                if count <= int(n):
                    return web.Response(status=503, text="try again")
                return web.Response(text="ok")
            case ["big", n]:
                response = web.StreamResponse()
                response.enable_chunked_encoding()
                await response.prepare(request)
                remaining = int(n)
                while remaining > 0:
                    step = min(remaining, 65536)
                    await response.write(b"x" * step)
                    remaining -= step
                await response.write_eof()
                return response
            case ["text"]:
                return web.Response(text="plain text")
            case ["say"]:
                return web.Response(text=request.query.get("text", ""))
            case ["hook", *_]:
                return web.Response(status=204)
            case ["redirect"]:
                raise web.HTTPFound(request.query["to"])
            case ["together"]:
                return await self._together()
            case ["hang"]:
                assert self._gate is not None
                try:
                    await self._gate.wait()
                except asyncio.CancelledError:
                    # The client closed the connection (aiohttp cancels the handler).
                    with self._changed:
                        self._disconnects += 1
                        self._changed.notify_all()
                    raise
                return web.Response(text="released")
        return web.json_response({"error": "no route"}, status=404)

    async def _together(self) -> web.Response:
        assert self._gate is not None and self._all_in is not None
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            if self._in_flight >= self.together_parties:
                self._all_in.set()
        try:
            # Answer only once every party is inside: were the requests made one after the
            # other, the first would wait here until the client gave up.
            all_in = asyncio.ensure_future(self._all_in.wait())
            released = asyncio.ensure_future(self._gate.wait())
            await asyncio.wait({all_in, released}, return_when=asyncio.FIRST_COMPLETED)
            all_in.cancel()
            released.cancel()
            return web.Response(text="together")
        finally:
            with self._lock:
                self._in_flight -= 1
