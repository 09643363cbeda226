"""The content policy: a file of blocked words, checked against inputs and outputs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flowport.errors import ContentBlocked


class ContentPolicy:
    """Case-insensitive substring matching of every word in the file, one word a line."""

    def __init__(self, words: list[str]) -> None:
        words = sorted({w.strip().casefold() for w in words if w.strip()}, key=len, reverse=True)
        # One alternation compiled once: a check costs one regex scan of the text.
        self._pattern = re.compile("|".join(map(re.escape, words))) if words else None

    @classmethod
    def from_file(cls, path: Path | None) -> ContentPolicy:
        if path is None:
            return cls([])
        return cls(path.read_text(encoding="utf-8").splitlines())

    @property
    def active(self) -> bool:
        return self._pattern is not None

    def blocks(self, text: str) -> bool:
        return self._pattern is not None and self._pattern.search(text.casefold()) is not None

    def check_inputs(self, inputs: dict[str, Any]) -> None:
        """Names the input that holds a blocked word; never the word itself."""
        for path, text in _strings(inputs, "input"):
            if self.blocks(text):
                raise ContentBlocked(f"{path}: blocked by the content policy")

    def check_output(self, text: str, *, node_id: str | None = None) -> None:
        if self.blocks(text):
            raise ContentBlocked("the output was blocked by the content policy", node_id=node_id)


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
