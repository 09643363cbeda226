"""The web console's text keeps WCAG AA contrast (4.5:1) on every background it is drawn on,
read from the stylesheet itself, so that a colour changed later is checked too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STYLESHEET = Path(__file__).resolve().parents[2] / "console" / "src" / "console.css"
AA = 4.5


def _rules(css: str) -> dict[str, dict[str, str]]:
    rules: dict[str, dict[str, str]] = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", re.sub(r"/\*.*?\*/", "", css)):
        declarations = dict(
            (name.strip(), value.strip())
            for name, value in re.findall(r"([\w-]+)\s*:\s*([^;]+)", body)
        )
        for selector in selectors.split(","):
            rules.setdefault(selector.strip(), {}).update(declarations)
    return rules


RULES = _rules(STYLESHEET.read_text())
VARIABLES = {name: value for name, value in RULES[":root"].items() if name.startswith("--")}


def _colour(value: str) -> tuple[float, float, float]:
    value = value.split()[0] if value.startswith("var(") else value
    match = re.fullmatch(r"var\((--[\w-]+)\)", value)
    if match:
        value = VARIABLES[match.group(1)]
    hex_digits = re.fullmatch(r"#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})", value)
    assert hex_digits, f"not a colour this test reads: {value}"
    digits = hex_digits.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    rgb = [int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    return rgb[0], rgb[1], rgb[2]


def _luminance(rgb: tuple[float, float, float]) -> float:
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted(
        (_luminance(_colour(foreground)), _luminance(_colour(background))), reverse=True
    )
    return (lighter + 0.05) / (darker + 0.05)


# (selector, the background it is drawn on when the rule sets none)
TEXT = [
    (":root", "var(--bg)"),
    ("a", "var(--bg)"),
    (".muted", "var(--bg)"),
    (".muted", "var(--panel)"),
    ("header .who", "var(--panel)"),
    ('nav a[aria-current="page"]', None),
    ("button", None),
    ("button.secondary", None),
    ("button.danger", None),
    (".error", None),
    (".notice", None),
    (".success", None),
    (".status-succeeded", "var(--bg)"),
    (".status-failed", "var(--bg)"),
    (".secret", None),
]


@pytest.mark.parametrize(("selector", "behind"), TEXT)
def test_text_keeps_aa_contrast(selector: str, behind: str | None) -> None:
    # A variant (`button.danger`) takes what it does not set from its element's rule.
    base = RULES.get(selector.split(".")[0], {}) if "." in selector[1:] else {}
    rule = {**base, **RULES[selector]}
    foreground = rule.get("color", "var(--text)")
    background = rule.get("background", behind)
    assert background is not None, f"{selector} sets no background"
    ratio = contrast(foreground, background)
    assert ratio >= AA, f"{selector}: {foreground} on {background} is {ratio:.2f}:1"


def test_focus_is_outlined() -> None:
    outline = RULES[":focus-visible"]["outline"]
    assert outline.startswith("3px solid")
