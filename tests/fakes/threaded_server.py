"""An aiohttp app on 127.0.0.1 with its own thread and event loop, so that sync tests and
async tests (whose loop stays free) can both use it."""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Self

from aiohttp import web


class ThreadedServer:
    """Subclasses add their routes in `routes()` and may prepare loop-bound state in
    `on_start()`; `release()` lets held requests go on, and runs before stopping."""

    thread_name = "fake-server"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    def start(self) -> str:
        """Starts serving; returns the base URL clients use."""
        raise NotImplementedError

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def on_start(self) -> None:
        """Runs on the server's loop before it serves."""

    def release(self) -> None:
        """Lets held requests answer; nothing is held by default."""

    def start_server(self) -> int:
        """Starts serving on a free port; returns the port."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=10)
        return self.port

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self.release()
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._runner = None

    def call_soon(self, callback: object, *args: object) -> None:
        """Runs `callback(*args)` on the server's loop, from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(callback, *args)  # type: ignore[arg-type]

    def run(self, coroutine: object) -> None:
        """Runs a coroutine on the server's loop and waits for it, from any thread."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)  # type: ignore[arg-type]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _serve(self) -> int:
        await self.on_start()
        app = web.Application()
        self.routes(app)
        # Cancel a handler when its client disconnects, as a real server stops work.
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return int(self._runner.addresses[0][1])
