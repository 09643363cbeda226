"""Raw request bodies: the `version` a run call pins, and numbers past a double refused by name
rather than failing the service."""

from __future__ import annotations

import pytest

from flowport import jsonbody
from flowport.errors import InvalidArgument


@pytest.mark.parametrize(
    ("sent", "pinned"),
    [
        (3, 3),
        ("3", 3),
        (3.0, 3),
        ("prod", "prod"),
        ("Blue_2-b", "Blue_2-b"),
        (None, None),
        ("", None),
    ],
)
def test_a_pin_is_a_version_number_or_an_alias(sent: object, pinned: object) -> None:
    assert jsonbody.pin(sent) == pinned


@pytest.mark.parametrize(
    "sent", [0, -1, 1.5, True, "0", "two words", "1x", "_x", "a" * 64, ["prod"], {"v": 1}, 2**31]
)
def test_a_malformed_pin_is_refused_naming_the_field(sent: object) -> None:
    with pytest.raises(InvalidArgument) as refused:
        jsonbody.pin(sent)
    assert refused.value.field == "version"


@pytest.mark.parametrize("sign", ["", "-"])
def test_an_integer_just_past_a_double_is_refused_not_a_crash(sign: str) -> None:
    # Short enough for int(), too large for math.isfinite (an OverflowError, a 500, before).
    body = b'{"args": {"age": %s%d}}' % (sign.encode(), 9 * 10**308)
    with pytest.raises(InvalidArgument) as refused:
        jsonbody.read_object(body, fields=("args",), example="{}")
    assert refused.value.message == "args.age: number out of range (beyond a double)"
