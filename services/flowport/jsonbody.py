"""Request bodies received as raw bytes: strict UTF-8 JSON objects, every problem named."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from flowport.errors import InvalidArgument

# What a body may hold is what a run's record can give back: GET /v1/runs answers with a
# google.protobuf.Struct, which carries JSON nested about 33 levels deep at most (protobuf's
# decoders stop at 100 message levels, and each JSON level costs a Struct three).
MAX_DEPTH = 32
# Doubles end here; so do Struct's numbers, and the number inputs of a workflow.
MAX_NUMBER = sys.float_info.max
# Digits of the longest integer below MAX_NUMBER; longer ones are refused before int() sees them
# (int() itself stops at 4300 digits, with a ValueError json.loads does not name).
MAX_INT_DIGITS = len(str(int(MAX_NUMBER)))
# An alias of a workflow's version starts with a letter, so that a pin is a version number or
# an alias, never both.
ALIAS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
# A run call's `version`: a number, an alias, or None for the newest.
Pin = int | str | None
# Where a value is in the body: its parent's place and its key there; None for the body.
_Place = tuple["_Place", str | int] | None
# A \u escape of a UTF-16 surrogate; only a pair of them makes a character.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def read_object(body: bytes, *, fields: Sequence[str], example: str) -> dict[str, Any]:
    """The body as a JSON object with only `fields`; an empty body is `{}`. Every value fits
    what the service can store and show: finite doubles, valid Unicode, MAX_DEPTH levels."""
    if not body.strip():
        return {}
    try:
        # JSON on the wire is UTF-8 (RFC 8259); json.loads would guess other encodings.
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument("body: not valid UTF-8") from None
    # RFC 8259 lets parsers ignore a byte order mark; some Windows clients send one.
    text = text.removeprefix("\ufeff")
    try:
        if text.startswith("\ufeff"):
            # What json.loads says of a second one (its decoder, used directly, says nothing).
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        data = _DECODER.decode(text)
    except RecursionError:
        raise InvalidArgument(f"body: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as error:
        reason = str(error).split("\n", 1)[0][:200]
        raise InvalidArgument(f"body: not valid JSON ({reason})") from None
    _check_values(data, surrogates=_SURROGATE_ESCAPE.search(text) is not None)
    if not isinstance(data, dict):
        raise InvalidArgument(f"body: must be a JSON object such as {example}")
    unknown = data.keys() - fields
    if unknown:
        raise InvalidArgument.at(min(unknown), f"unknown field (known: {', '.join(fields)})")
    return data


def _parse_int(text: str) -> int | float:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        # Out of range either way; _check_values names where.
        return -math.inf if text.startswith("-") else math.inf
    return int(text)


def _refuse_constant(name: str) -> None:
    # Python's json takes these; JSON (RFC 8259) has no such numbers.
    raise InvalidArgument(f"body: {name} is not valid JSON")


# Made once: json.loads with hooks builds a decoder and its scanner on every call.
_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_constant=_refuse_constant)


def _check_values(data: Any, *, surrogates: bool) -> None:
    """Refuses, naming the field, what the service could not store or show back: nesting past
    MAX_DEPTH, numbers beyond a double, and strings holding lone surrogates (only checked when
    the text has a surrogate escape: valid UTF-8 cannot hold them otherwise)."""
    # Each value with its depth and where it is, as (parent's place, key) pairs: spelled out
    # by _where only for the value refused, not copied for every value checked.
    pending: list[tuple[Any, int, _Place]] = [(data, 0, None)]
    while pending:
        value, depth, path = pending.pop()
        if isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise InvalidArgument(f"body: nested deeper than {MAX_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if surrogates and isinstance(key, str) and not _is_unicode(key):
                    raise InvalidArgument.at(_where(path), "a key holds a lone UTF-16 surrogate")
                pending.append((item, depth + 1, (path, key)))
        elif isinstance(value, (float, int)) and not isinstance(value, bool):
            # abs() first: math.isfinite cannot take an int beyond a double (OverflowError).
            if abs(value) > MAX_NUMBER or not math.isfinite(value):
                raise InvalidArgument.at(_where(path), "number out of range (beyond a double)")
        elif surrogates and isinstance(value, str) and not _is_unicode(value):
            raise InvalidArgument.at(_where(path), "a string holds a lone UTF-16 surrogate")


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _where(place: _Place) -> str:
    """`input.height`, `args.list[2]`; `body` for the body itself."""
    keys: list[str | int] = []
    while place is not None:
        place, key = place
        keys.append(key)
    where = ""
    for key in reversed(keys):
        where += f"[{key}]" if isinstance(key, int) else (f".{key}" if where else key)
    return where or "body"


def optional_object(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument.at(name, "must be a JSON object")
    return value


def optional_session_id(data: dict[str, Any]) -> str | None:
    value = data.get("session_id")
    if value is not None and (not isinstance(value, str) or len(value) > 128):
        raise InvalidArgument.at("session_id", "must be a string of at most 128 characters")
    return value or None


def optional_webhook_url(data: dict[str, Any]) -> str | None:
    """The call's `webhook_url`, an http(s) URL (whether it may be reached is checked at
    admission, as http nodes' URLs are)."""
    value = data.get("webhook_url")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise InvalidArgument.at("webhook_url", "must be an http:// or https:// URL")
    if len(value) > 2048:
        raise InvalidArgument.at("webhook_url", "must be at most 2048 characters")
    return value


def optional_choice(data: dict[str, Any], name: str, choices: Sequence[str]) -> str | None:
    """A string field that takes one of `choices`; None when absent."""
    value = data.get(name)
    if value is None:
        return None
    if value not in choices:
        raise InvalidArgument.at(name, f"must be one of {', '.join(map(repr, choices))}")
    return str(value)


def pin(value: object, name: str = "version") -> Pin:
    """A run call's `version`: a published version's number (3, or "3" from callers that send
    strings), an alias ("prod"), or None (absent, null or empty) for the newest."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        # A JSON number through google.protobuf.Value (gRPC's RunRequest) is a double.
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 2**31 - 1:
            raise InvalidArgument.at(name, "a version number is 1 or more")
        return value
    if isinstance(value, str) and ALIAS_NAME.fullmatch(value):
        return value
    raise InvalidArgument.at(
        name,
        'must be a version number (3) or an alias ("prod": a letter, then up to 62 '
        "letters, digits, _ or -)",
    )


def dumps(value: Any) -> bytes:
    """Compact JSON with readable non-ASCII text, as FlowAI and LinkAI write it. orjson
    writes what the standard library's json writes with ensure_ascii=False and compact
    separators (but for the exponent of a float below 1e-4, `1e-5` for `1e-05`), many
    times faster: every frame of every run is written through here."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
