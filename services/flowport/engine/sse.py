"""Server-sent events decoded from the chunks of a byte stream, as the WHATWG HTML standard
defines the `text/event-stream` format: the LLM provider's stream, read through aiohttp.

Written here rather than taken from a library: the maintained SSE clients each own their
transport (httpx-sse reads only an httpx response, aiohttp-sse-client2 makes its own
requests and reconnects), and the provider's stream is read through aiohttp (README,
Dependencies, says why)."""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass

# A line ends at CRLF, LF or CR, and at nothing else (str.splitlines also splits at
# form feeds, U+2028 and more, which may appear inside an event's data).
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""


class SseDecoder:
    """Feed it chunks as they arrive; each `feed` returns the events the chunk completed.

    An event is complete at the blank line after it; an unfinished one at the end of the
    stream is dropped, as the standard says, so a cut connection never yields half an event.
    The `id` and `retry` fields are read and ignored: they serve a client that reconnects
    and resumes, and a provider's stream is never resumed (a broken one fails the node).
    """

    def __init__(self) -> None:
        # Incremental: a character split across two chunks is decoded once both are in.
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._unfinished = ""  # the start of a line whose end has not arrived
        self._started = False
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        text = self._unfinished + self._utf8.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")  # a byte order mark may open the stream
        # A CR at the very end may be the first half of a CRLF: the line it ends is
        # complete, but which line comes next is only known with the next chunk.
        held = "\r" if text.endswith("\r") else ""
        lines = _LINE_END.split(text[: len(text) - len(held)])
        self._unfinished = lines.pop() + held
        events = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def end(self) -> list[ServerSentEvent]:
        """The stream ended: a CR held back by `feed` ended its line after all."""
        line, self._unfinished = self._unfinished, ""
        if not line.endswith("\r"):
            return []  # an unfinished line: dropped with the event it belonged to
        event = self._line(line[:-1])
        return [] if event is None else [event]

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, such as a keep-alive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event, data = self._event, self._data
        self._event, self._data = "", []
        if not data:
            return None  # no data field: nothing to dispatch
        return ServerSentEvent(event=event or "message", data="\n".join(data))


async def event_batches(
    chunks: AsyncIterable[bytes],
) -> AsyncGenerator[list[ServerSentEvent], None]:
    """The events of a stream, as lists of those each chunk completed (often none, or many
    at once when the sender wrote faster than the reader read)."""
    decoder = SseDecoder()
    async for chunk in chunks:
        if events := decoder.feed(chunk):
            yield events
    if events := decoder.end():
        yield events
