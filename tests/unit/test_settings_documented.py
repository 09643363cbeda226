"""Every setting is in docs/api.md's configuration table, by the variable that sets it."""

from __future__ import annotations

from pathlib import Path

from flowport.settings import Settings

API = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_every_setting_is_in_the_configuration_table() -> None:
    text = API.read_text(encoding="utf-8")
    table = text[text.index("## Configuration") : text.index("## Command line")]
    missing = [name for name in Settings.model_fields if f"`FLOWPORT_{name.upper()}`" not in table]
    assert missing == []
