"""Image and file inputs given as URLs: both pass the SSRF guard; files are fetched."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from flowport import outbound
from flowport.engine import InputSpec
from flowport.errors import FlowportError, InvalidArgument


class FetchedFile(str):
    """A file input. It reads as its URL, so run records, events and JSON show what the caller
    sent, and carries the fetched content for templates: `{{ input_file.text }}`."""

    text: str
    content_type: str
    size: int

    def __new__(cls, url: str, *, text: str, content_type: str, size: int) -> FetchedFile:
        value = super().__new__(cls, url)
        value.text = text
        value.content_type = content_type
        value.size = size
        return value

    @property
    def url(self) -> str:
        return str.__str__(self)


async def resolve(
    specs: Sequence[InputSpec], inputs: dict[str, Any], client: outbound.Outbound
) -> dict[str, Any]:
    """Checks every image URL and fetches every file, concurrently; any problem is a 400
    naming the input. The LLM provider fetches images itself, so they are only checked."""
    kinds = {spec.name: spec.type for spec in specs}
    names = [n for n, v in inputs.items() if kinds.get(n) in ("image", "file") and v is not None]
    if not names:
        return inputs
    resolved = await asyncio.gather(*(_resolve(n, inputs[n], kinds[n], client) for n in names))
    return {**inputs, **dict(zip(names, resolved, strict=True))}


async def _resolve(name: str, url: str, kind: str, client: outbound.Outbound) -> str:
    try:
        if kind == "image":
            await client.check_url(url)
            return url
        response = await client.fetch(url)
    except FlowportError as error:
        # Refused, too large, timed out or unreachable: all the caller's URL, so all 400.
        raise InvalidArgument.at(f"input.{name}", error.message) from None
    if not 200 <= response.status < 300:
        raise InvalidArgument.at(
            f"input.{name}", f"fetching the file answered {response.status} {response.reason}"
        )
    return FetchedFile(
        url,
        text=response.text,
        content_type=response.headers.get("content-type", ""),
        size=len(response.content),
    )
