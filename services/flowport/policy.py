"""The content policy: a file of blocked words, checked against inputs and outputs."""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flowport.errors import ContentBlocked

# A stream keeps this many visible characters per character of the longest word, and a
# few more, to match a word split across chunks: combining marks make a word's source
# text longer than the word itself.
_TAIL_PER_CHAR = 4
_TAIL_EXTRA = 16


@functools.cache
def _invisible() -> re.Pattern[str]:
    """Every format character (Unicode category Cf: zero-width spaces and joiners, the soft
    hyphen, bidi marks, ...), built once on first use from the running Unicode database."""
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)) == "Cf":
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return re.compile(
        "[" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges) + "]"
    )


def strip_invisible(text: str) -> str:
    return _invisible().sub("", text)


def fold(text: str) -> str:
    """The text as the policy compares it: without format characters, NFKC-normalised and
    case-folded (so `ｆｏｒｂｉｄｄｅｎ`, `for\\u200bbidden` and `FORBIDDEN` read `forbidden`).
    NFKC again after folding, as Unicode's NFKC_Casefold does: folding can undo NFKC."""
    visible = strip_invisible(text)
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", visible).casefold())


def _folded_word(line: str) -> str:
    return fold(line).strip()


class ContentPolicy:
    """Substring matching of every word in the file, one word a line, on folded text."""

    def __init__(self, words: list[str]) -> None:
        folded = sorted({word for word in map(_folded_word, words) if word}, key=len, reverse=True)
        # One alternation compiled once: a check costs one regex scan of the text.
        self._pattern = re.compile("|".join(map(re.escape, folded))) if folded else None
        # How much of a stream's text a watch keeps between chunks.
        self.stream_tail = _TAIL_PER_CHAR * max(map(len, folded), default=0) + _TAIL_EXTRA

    @classmethod
    def from_file(cls, path: Path | None) -> ContentPolicy:
        if path is None:
            return cls([])
        return cls(path.read_text(encoding="utf-8").splitlines())

    @property
    def active(self) -> bool:
        return self._pattern is not None

    def blocks(self, text: str) -> bool:
        return self._pattern is not None and self._pattern.search(fold(text)) is not None

    def check_inputs(self, inputs: dict[str, Any]) -> None:
        """Names the input that holds a blocked word; never the word itself."""
        if self._pattern is None:
            return
        for path, text in _strings(inputs, "input"):
            if self.blocks(text):
                raise ContentBlocked(f"{path}: blocked by the content policy")

    def check_output(self, text: str, *, node_id: str | None = None) -> None:
        if self.blocks(text):
            raise ContentBlocked("the output was blocked by the content policy", node_id=node_id)

    def watch(self, *, node_id: str | None = None) -> StreamWatch:
        """A watch over one stream of chunks (an llm node's tokens)."""
        return StreamWatch(self, node_id=node_id)


class StreamWatch:
    """Checks a stream chunk by chunk as one text: a word split across chunks (or by
    invisible characters between them) is caught by the chunk that completes it, which the
    caller then withholds, so the word never reaches the client whole. Only a bounded tail of
    the text is folded again per chunk."""

    def __init__(self, policy: ContentPolicy, *, node_id: str | None) -> None:
        self._policy = policy
        self._node_id = node_id
        # The stream's last visible characters: enough to hold any word's start.
        self._tail = ""

    def feed(self, chunk: str) -> None:
        """Raises ContentBlocked when the text so far holds a word."""
        text = self._tail + strip_invisible(chunk)
        if self._policy.blocks(text):
            raise ContentBlocked(
                "the output was blocked by the content policy", node_id=self._node_id
            )
        self._tail = text[-self._policy.stream_tail :]


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
