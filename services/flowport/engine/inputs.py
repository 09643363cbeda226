"""Validation and coercion of a run's input against the workflow's `in` node, before it starts."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flowport.errors import InvalidArgument

if TYPE_CHECKING:
    from flowport.engine.nodes.in_node import InputSpec

# A decimal number as people type it ("75", "-1.8", "2e3"); stricter than float(), which
# also takes "nan", "infinity" and "1_000".
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
# Doubles represent integers exactly up to here.
_MAX_EXACT_INT = 2**53
# Digits of the largest integer a double reaches.
_MAX_INT_DIGITS = len(str(int(sys.float_info.max)))


def validate_inputs(specs: list[InputSpec], raw: object) -> dict[str, Any]:
    """The run's inputs, coerced to their declared types; InvalidArgument names the field."""
    if not isinstance(raw, Mapping):
        raise InvalidArgument.at("input", "must be a JSON object")
    known = {spec.name for spec in specs}
    for key in raw:
        if key not in known:
            names = ", ".join(spec.name for spec in specs) or "none"
            raise InvalidArgument.at(
                f"input.{key}", f"not an input of this workflow (inputs: {names})"
            )
    values: dict[str, Any] = {}
    for spec in specs:
        # null counts as absent: clients send it for fields they leave empty.
        value = raw.get(spec.name)
        if value is None:
            if spec.required:
                raise InvalidArgument.at(f"input.{spec.name}", "required")
            value = spec.default
            if value is None:
                continue
        try:
            values[spec.name] = coerce_value(spec, value)
        except ValueError as exc:
            raise InvalidArgument.at(f"input.{spec.name}", str(exc)) from None
    return values


def coerce_value(spec: InputSpec, value: object) -> Any:
    """`value` as the type `spec` declares; ValueError says what is wrong with it."""
    match spec.type:
        case "number":
            result: Any = _number(value)
        case "boolean":
            result = _boolean(value)
        case "text":
            result = _string(value, "a string")
        case "image" | "file":
            result = _url(value)
        case "object":
            if not isinstance(value, Mapping):
                raise ValueError(f"expected a JSON object, got {_show(value)}")
            result = dict(value)
    if spec.max_length is not None and isinstance(result, str) and len(result) > spec.max_length:
        raise ValueError(f"longer than max_length {spec.max_length}")
    return result


def _number(value: object) -> int | float:
    if isinstance(value, bool):  # bool is an int subclass, but true is not 1 here
        raise ValueError(f"expected a number, got {_show(value)}")
    if isinstance(value, int):
        return _within_double(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        text = value.strip()
        if not any(c in text for c in ".eE"):
            # int() gives up past 4300 digits with its own message; doubles end far sooner.
            if len(text.lstrip("+-")) > _MAX_INT_DIGITS:
                raise ValueError(_out_of_range(value))
            return _within_double(int(text))
        value = float(text)
    if not isinstance(value, float):
        raise ValueError(f"expected a number, got {_show(value)}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {_show(value)}")
    # gRPC's Struct (and so the REST routes behind Envoy) carries every number as a
    # double; 75.0 becomes 75 so that `{{ weight }}` renders the same on every surface.
    if value.is_integer() and abs(value) <= _MAX_EXACT_INT:
        return int(value)
    return value


def _within_double(value: int) -> int:
    # Templates mix numbers with floats: a larger integer overflows them (10**400 / 4 raises),
    # and no other surface could carry it.
    if abs(value) > sys.float_info.max:
        raise ValueError(_out_of_range(value))
    return value


def _out_of_range(value: object) -> str:
    # An int past 4300 digits cannot even be printed (int's own limit).
    shown = "a larger integer" if isinstance(value, int) else _show(value)
    return f"expected a number within ±{sys.float_info.max:.1e}, got {shown}"


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"expected a boolean, got {_show(value)}")


def _string(value: object, expected: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected {expected}, got {_show(value)}")
    return value


def _url(value: object) -> str:
    url = _string(value, "an http(s) URL")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) URL, got {_show(value)}")
    return url.strip()


def _show(value: object) -> str:
    """A short JSON rendering of a rejected value, for the error message."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
