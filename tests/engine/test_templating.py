"""Templates: what they see, how they render, and what the sandbox refuses."""

from __future__ import annotations

import pytest

from flowport.engine.templating import build_context, compile_template, render
from flowport.errors import FlowportError, InvalidArgument


def test_bmi_template_renders_two_decimals() -> None:
    context = build_context({"height": 1.8, "weight": 75}, {})
    calc = render(
        compile_template("{{ (weight / (height * height)) | round(2) }}"), context, node_id="calc"
    )
    context = build_context({}, {"calc": {"output": calc}})
    assert render(compile_template("您的BMI值是{{ calc.output }}"), context, node_id="end") == (
        "您的BMI值是23.15"
    )


def test_nodes_are_reachable_by_id_and_identifier_ids_also_by_name() -> None:
    context = build_context(
        {"q": "?"},
        {"1741675999864": {"output": "嗯"}, "calc": {"output": "1", "extra": "x"}},
    )
    template = compile_template(
        '{{ nodes["1741675999864"].output }}{{ calc.output }}{{ nodes.calc.extra }}{{ q }}'
    )
    assert render(template, context, node_id="end") == "嗯1x?"
    assert "1741675999864" not in context


def test_objects_render_as_json_and_missing_values_as_nothing() -> None:
    context = build_context({"o": {"城市": "北京", "n": [1, 2]}, "none": None}, {})
    assert render(compile_template("{{ o }}|{{ none }}|{{ absent }}"), context, node_id="n") == (
        '{"城市": "北京", "n": [1, 2]}||'
    )


def test_jinjas_globals_render_and_a_render_changes_none_of_them() -> None:
    source = (
        "{% set ns = namespace(total=0) %}{% for i in range(3) %}{% set ns.total = ns.total + i %}"
        "{% endfor %}{{ ns.total }} {{ dict(a=1)['a'] }} {{ x }}"
    )
    template = compile_template(source)
    assert render(template, {"x": "first"}, node_id="t") == "3 1 first"
    # A run's variable named like a global hides it in that render only.
    with pytest.raises(FlowportError):
        render(template, {"x": "second", "range": None}, node_id="t")
    assert render(template, {"x": "third"}, node_id="t") == "3 1 third"


def test_syntax_error_is_invalid_argument_with_line() -> None:
    with pytest.raises(InvalidArgument, match="syntax error at line 2"):
        compile_template("ok\n{% for %}")


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("{{ ''.__class__.__mro__ }}", "access to attribute '__class__' of 'str' object is unsafe"),
        ("{{ x.__init__.__globals__ }}", "access to attribute '__init__'"),
        ("{{ items.append(1) }}", "access to attribute 'append' of 'list' object is unsafe"),
        ("{{ 1 / zero }}", "ZeroDivisionError: division by zero"),
        ("{{ missing.output }}", "'missing' is undefined"),
        ("{{ 'a' - 1 }}", "TypeError"),
    ],
)
def test_render_errors_name_the_node_without_a_traceback(source: str, what: str) -> None:
    context = build_context({"x": "s", "items": [1], "zero": 0}, {})
    with pytest.raises(FlowportError) as caught:
        render(compile_template(source), context, node_id="calc")
    assert caught.value.message.startswith(f"node calc: {what}"), caught.value.message
    assert caught.value.node_id == "calc"
    assert "Traceback" not in caught.value.message
