"""Request bodies received as raw bytes: strict UTF-8 JSON objects, every problem named."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from flowport.errors import InvalidArgument


def read_object(body: bytes, *, fields: Sequence[str], example: str) -> dict[str, Any]:
    """The body as a JSON object with only `fields`; an empty body is `{}`."""
    if not body.strip():
        return {}
    try:
        # JSON on the wire is UTF-8 (RFC 8259); json.loads would guess other encodings.
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument("body: not valid UTF-8") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        reason = str(error).split("\n", 1)[0][:200]
        raise InvalidArgument(f"body: not valid JSON ({reason})") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"body: must be a JSON object such as {example}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InvalidArgument(f"{unknown[0]}: unknown field (known: {', '.join(fields)})")
    return data


def optional_object(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{name}: must be a JSON object")
    return value


def optional_session_id(data: dict[str, Any]) -> str | None:
    value = data.get("session_id")
    if value is not None and (not isinstance(value, str) or len(value) > 128):
        raise InvalidArgument("session_id: must be a string of at most 128 characters")
    return value or None


def dumps(value: Any) -> bytes:
    """Compact JSON with readable non-ASCII text, as FlowAI and LinkAI write it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
