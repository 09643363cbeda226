"""The provider stream's SSE decoding: the text/event-stream rules, however the bytes arrive."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flowport.engine.sse import ServerSentEvent, SseDecoder, event_batches

STREAM = (
    ": keep-alive comment\n"
    'data: {"a": 1}\n'
    "\n"
    "event: usage\n"
    "data:first\n"
    "data:  second, its own leading space kept\n"
    "id: 7\n"
    "retry: 1000\n"
    "unknown: ignored\n"
    "\n"
    "data: 猫 and \u2028 stay in one line\n"
    "\n"
    "data: [DONE]\n"
    "\n"
).encode()

EVENTS = [
    ServerSentEvent(data='{"a": 1}'),
    ServerSentEvent(event="usage", data="first\n second, its own leading space kept"),
    ServerSentEvent(data="猫 and \u2028 stay in one line"),
    ServerSentEvent(data="[DONE]"),
]


def decode(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SseDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.end()


def test_a_stream_in_one_chunk() -> None:
    assert decode([STREAM]) == EVENTS


def test_a_stream_a_byte_at_a_time_splits_characters_and_line_ends() -> None:
    # "猫" is three bytes in UTF-8: single bytes split it, and every CRLF below.
    assert decode([bytes([b]) for b in STREAM]) == EVENTS
    crlf = STREAM.replace(b"\n", b"\r\n")
    assert decode([bytes([b]) for b in crlf]) == EVENTS


@pytest.mark.parametrize("line_end", [b"\r\n", b"\r", b"\n"])
def test_every_line_end_the_standard_allows(line_end: bytes) -> None:
    assert decode([STREAM.replace(b"\n", line_end)]) == EVENTS


def test_a_cr_at_a_chunk_end_then_lf_is_one_line_end() -> None:
    # Were the LF taken for a second line end, it would be a blank line: an extra event.
    assert decode([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]) == [ServerSentEvent(data="a\nb")]


def test_an_event_without_data_is_not_dispatched() -> None:
    assert decode([b"event: ping\n\nid: 3\n\n: only a comment\n\n"]) == []


def test_an_empty_data_field_is_an_event_of_empty_data() -> None:
    assert decode([b"data\n\ndata:\n\n"]) == [ServerSentEvent(data=""), ServerSentEvent(data="")]


def test_an_event_cut_off_by_the_stream_end_is_dropped() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: whole\n\ndata: half") == [ServerSentEvent(data="whole")]
    assert decoder.end() == []
    decoder = SseDecoder()
    assert decoder.feed(b"data: whole\r\rdata: ended, no blank line\r") == [
        ServerSentEvent(data="whole")
    ]
    assert decoder.end() == []


async def test_batches_are_the_events_each_chunk_completed() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"data: a\n\ndata: b\n\ndata: c", b"\n", b"\n", b"data: d\r\r"):
            yield chunk

    batches = [batch async for batch in event_batches(chunks())]
    assert batches == [
        [ServerSentEvent(data="a"), ServerSentEvent(data="b")],
        [ServerSentEvent(data="c")],
        [ServerSentEvent(data="d")],  # its CR-ended blank line was known only at the end
    ]


def test_a_byte_order_mark_opens_the_stream_only() -> None:
    bom = "\ufeff".encode()
    assert decode([bom[:1], bom[1:] + b"data: x\n\n"]) == [ServerSentEvent(data="x")]
    assert decode([b"data: \xef\xbb\xbfx\n\n"]) == [ServerSentEvent(data="\ufeffx")]


def test_bytes_that_are_not_utf8_are_replaced_not_fatal() -> None:
    assert decode([b"data: \xff\n\n"]) == [ServerSentEvent(data="\ufffd")]
