"""A run's input: coerced like LinkAI and FlowAI clients expect, refused with the field named."""

from __future__ import annotations

from typing import Any

import pytest

from flowport.engine.definition import InputSpec
from flowport.engine.inputs import validate_inputs
from flowport.errors import InvalidArgument


def spec(name: str, type: str = "text", **fields: Any) -> InputSpec:
    return InputSpec.model_validate({"name": name, "type": type, **fields})


BMI = [spec("height", "number", required=True), spec("weight", "number", required=True)]


@pytest.mark.parametrize(
    ("specs", "raw", "expected"),
    [
        (BMI, {"height": "1.8", "weight": "75"}, {"height": 1.8, "weight": 75}),
        (BMI, {"height": 1.8, "weight": 75.0}, {"height": 1.8, "weight": 75}),
        (BMI, {"height": " 2e0 ", "weight": -3}, {"height": 2, "weight": -3}),
        ([spec("ok", "boolean")], {"ok": "true"}, {"ok": True}),
        ([spec("ok", "boolean")], {"ok": "False"}, {"ok": False}),
        ([spec("ok", "boolean")], {"ok": True}, {"ok": True}),
        ([spec("pic", "image")], {"pic": "https://x.test/a.png"}, {"pic": "https://x.test/a.png"}),
        ([spec("doc", "file")], {"doc": "http://x.test/a.pdf"}, {"doc": "http://x.test/a.pdf"}),
        ([spec("o", "object")], {"o": {"a": [1]}}, {"o": {"a": [1]}}),
        ([spec("t", default="hi")], {}, {"t": "hi"}),
        ([spec("t")], {}, {}),
        ([spec("t")], {"t": None}, {}),
        ([spec("t", max_length=3)], {"t": "abc"}, {"t": "abc"}),
    ],
)
def test_valid_inputs_are_coerced(
    specs: list[InputSpec], raw: object, expected: dict[str, Any]
) -> None:
    result = validate_inputs(specs, raw)
    assert result == expected
    assert [type(v) for v in result.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize(
    ("specs", "raw", "message"),
    [
        (BMI, ["1.8"], "input: must be a JSON object"),
        (BMI, {"weight": 75}, "input.height: required"),
        (BMI, {"height": None, "weight": 75}, "input.height: required"),
        (BMI, {"height": "abc", "weight": 75}, 'input.height: expected a number, got "abc"'),
        (BMI, {"height": True, "weight": 75}, "input.height: expected a number, got true"),
        (BMI, {"height": "NaN", "weight": 75}, 'input.height: expected a number, got "NaN"'),
        (BMI, {"height": float("inf"), "weight": 75}, "input.height: expected a finite number"),
        (BMI, {"height": "1e999", "weight": 75}, "input.height: expected a finite number"),
        (BMI, {"height": "1_000", "weight": 75}, "input.height: expected a number"),
        (
            BMI,
            {"height": 1, "weight": 2, "foo": 3},
            "input.foo: not an input of this workflow (inputs: height, weight)",
        ),
        (
            [spec("text", max_length=10)],
            {"text": "x" * 11},
            "input.text: longer than max_length 10",
        ),
        ([spec("text")], {"text": 5}, "input.text: expected a string, got 5"),
        ([spec("ok", "boolean")], {"ok": "yes"}, 'input.ok: expected a boolean, got "yes"'),
        ([spec("ok", "boolean")], {"ok": 1}, "input.ok: expected a boolean, got 1"),
        ([spec("pic", "image")], {"pic": "ftp://x/a.png"}, "input.pic: expected an http(s) URL"),
        ([spec("pic", "image")], {"pic": "a.png"}, "input.pic: expected an http(s) URL"),
        ([spec("o", "object")], {"o": [1]}, "input.o: expected a JSON object, got [1]"),
    ],
)
def test_invalid_inputs_name_the_field(specs: list[InputSpec], raw: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_inputs(specs, raw)
    assert caught.value.message.startswith(message), caught.value.message
