"""The blocked-work panel of `nats-mcp top`: shown only when something is blocked, its text inert."""

from __future__ import annotations

from rich.console import Console

from nats_mcp.dashboard.terminal import _blocked


def test_blocked_work_table_shows_what_each_item_waits_for() -> None:
    assert _blocked(None) == [] and _blocked({"total": 0, "shown": []}) == []
    item = {
        "id": "i1",
        "taskId": "deploy \x1b[2J[bold]",
        "capability": "ops",
        "offeredBy": "g",
        "dependsOn": ["aaaaaaaa-1111", "bbbbbbbb-2222"],
        "dependsOnCount": 7,
    }
    (table,) = _blocked({"total": 3, "shown": [item]})
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    text = console.export_text()
    assert "Blocked work (3)" in text and "aaaaaaaa, bbbbbbbb +5" in text and "deploy" in text
    assert "\x1b" not in text
