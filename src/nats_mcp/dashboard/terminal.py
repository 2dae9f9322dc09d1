"""The dashboard's terminal boundary: a snapshot rendered as rich tables for ``nats-mcp top``.

Every value that came from agents (handles, messages, task ids) or from the audit is wrapped in ``Text``
(no rich markup is parsed) after control characters are replaced, so nothing shown can restyle or
drive the operator's terminal.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

BARS = "▁▂▃▄▅▆▇█"
STATUS_STYLE = {"online": "green", "busy": "yellow", "idle": "dim italic", "offline": "dim"}
KIND_STYLE = {"auth_failure": "red", "locked_out": "red", "anomaly": "red"}


def plain(value: object, limit: int = 80) -> Text:
    """Untrusted text as inert terminal text: control characters replaced, clipped, never parsed as markup."""
    text = "".join(
        c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in str(value if value is not None else "")
    )
    return Text(text if len(text) <= limit else text[: limit - 1] + "…")


def spark(values: list[float]) -> str:
    top = max(values, default=0) or 1
    return "".join(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1)))] for v in values[-30:])


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", expand=False, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(
            column,
            justify="right"
            if column in ("pending", "in flight", "DLQ", "calls", "errors", "messages", "count")
            else "left",
        )
    return table


def render(snap: dict[str, Any]) -> RenderableType:
    """The whole snapshot: header, agents, queues, channels, security events, traffic."""
    up = snap["nats"]["connected"]
    header = Text("nats-mcp top", style="bold") + "  namespace " + Text(plain(snap["namespace"]).plain, style="bold")
    header.append("  NATS connected  " if up else "  NATS disconnected  ", style="green" if up else "red")
    header.append(f"updated {snap['generatedAt']}", style="dim")
    parts: list[RenderableType] = [header]
    for error in snap["errors"]:
        parts.append(Text("! ", style="red") + plain(error, 200))

    agents = snap["agents"]
    table = _table(f"Agents ({agents['total']})", "agent", "via", "type", "status", "capabilities", "last seen")
    for a in agents["shown"]:
        table.add_row(
            plain(a["handle"], 40),
            plain(a["via"] or "—", 40),
            plain(a["agentType"], 30),
            Text(a["presence"], style=STATUS_STYLE.get(a["presence"], "")),
            plain(", ".join(a["capabilities"]), 60),
            f"{a['lastSeenAgoS']:.0f}s ago",
        )
    parts.append(table)

    table = _table("Work queues", "capability", "pending", "in flight", "DLQ", "trend (pending)")
    for q in snap["queues"]:
        table.add_row(
            plain(q["capability"], 40),
            str(q["pending"]),
            str(q["inFlight"]),
            str(q["deadLettered"]),
            spark([p[1] for p in q["trend"]]),
        )
    parts.append(table)

    parts.extend(_blocked(snap.get("blocked")))
    parts.extend(_fleet(snap.get("fleet")))

    table = _table("Channels", "channel", "messages", "latest")
    for c in snap["channels"]:
        latest = c["recent"][0] if c["recent"] else None
        shown = plain(f"{latest['handle']}: {latest['message']}", 100) if latest else Text("—", style="dim")
        table.add_row(plain(c["name"], 40), str(c["messages"]), shown)
    parts.append(table)

    security = snap["security"]
    table = _table(
        f"Security events ({security['total']})" + (f" — {security['note']}" if security["note"] else ""),
        "last seen",
        "kind",
        "who",
        "from",
        "reason",
        "count",
    )
    for e in security["events"][:10]:
        who = (f"{e['principal']} (agents {', '.join(e['agents'])})") if e["agents"] else e["principal"]
        table.add_row(
            plain(e["lastSeen"], 30),
            Text(str(e["kind"]), style=KIND_STYLE.get(str(e["kind"]), "yellow")),
            plain(who or "(unauthenticated)", 50),
            plain(e["peer"], 40),
            plain(e["reason"] or e["outcome"], 50),
            str(e["count"]),
        )
    parts.append(table)

    traffic = snap["traffic"]
    table = _table(
        f"Traffic: principal → tool (last {traffic['window']} calls)", "principal", "tool", "calls", "errors"
    )
    for edge in traffic["edges"][:15]:
        who = (", ".join(edge["agents"]) + f" ({edge['principal']})") if edge["agents"] else edge["principal"]
        table.add_row(plain(who, 50), plain(edge["tool"], 40), str(edge["calls"]), str(edge["errors"]))
    parts.append(table)
    return Group(*parts)


def _blocked(blocked: dict[str, Any] | None) -> list[RenderableType]:
    """Items waiting for their dependencies (none: no table)."""
    if not blocked or not blocked["total"]:
        return []
    table = _table(f"Blocked work ({blocked['total']})", "task", "capability", "waits for")
    for b in blocked["shown"]:
        more = b["dependsOnCount"] - len(b["dependsOn"])
        waits = ", ".join(d[:8] for d in b["dependsOn"]) + (f" +{more}" if more else "")
        table.add_row(plain(b["taskId"], 40), plain(b["capability"], 30), plain(waits, 60))
    return [table]


def _fleet(fleet: dict[str, Any] | None) -> list[RenderableType]:
    """The fleet coordinator's targets and last decisions (no fleet in this namespace: no table)."""
    if not fleet:
        return []
    leader = fleet["leader"]
    if leader is None:
        who = "no coordinator yet"
    else:
        lease = f"lease {leader['leaseExpiresInS']:.0f}s" if leader["active"] else "lease expired"
        who = f"leader {leader['id']} on {leader.get('host')}, {lease}"
    table = _table(f"Fleet — {who}", "target", "capabilities", "live/max", "starting", "pending")
    for t in fleet["targets"]:
        table.add_row(
            plain(t["name"], 40),
            plain(", ".join(t["capabilities"]), 60),
            f"{t['live']}/{t['max']}",
            str(t["starting"]),
            str(t["pending"]),
        )
    decisions = _table("Fleet decisions", "action", "target", "reason")
    for d in fleet["decisions"][:5]:
        action = Text(str(d["action"]), style="" if d["ok"] else "red")
        decisions.add_row(action, plain(d["target"], 40), plain(d["reason"], 100))
    return [table, decisions] if fleet["decisions"] else [table]
