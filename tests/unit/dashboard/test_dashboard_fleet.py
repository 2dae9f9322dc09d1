"""The fleet panel of `nats-mcp top`: shown only where a fleet has run, its reasons inert text."""

from __future__ import annotations

from rich.console import Console

from nats_mcp.dashboard.terminal import _fleet


def test_fleet_tables_show_targets_and_decisions_as_text() -> None:
    assert _fleet(None) == []
    fleet = {
        "leader": {"id": "c0ffee", "host": "h1", "leaseExpiresInS": 2.4, "active": True},
        "targets": [{"name": "py", "capabilities": ["python"], "max": 2, "live": 1, "starting": 1, "pending": 3}],
        "decisions": [{"action": "crashed", "target": "py", "reason": "exit \x1b[2J[bold]code 3", "ok": False}],
    }
    console = Console(width=200, record=True, color_system=None)
    for table in _fleet(fleet):
        console.print(table)
    text = console.export_text()
    assert "leader c0ffee on h1, lease 2s" in text and "1/2" in text and "crashed" in text
    assert "\x1b" not in text and "[bold]code 3" in text  # no escape reaches the terminal; markup is not parsed
    fleet["leader"] = None
    fleet["decisions"] = []
    (only,) = _fleet(fleet)
    console.print(only)
    assert "no coordinator yet" in console.export_text()
