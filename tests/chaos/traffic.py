"""Mixed agent traffic for chaos tests: posts, DMs and work through two SDK clients, tallying what was acknowledged
(an ``ok`` answer) and reading everything back to prove none of it was lost."""

from __future__ import annotations

import time
from typing import Any

from mcp import Client

from nats_mcp.api.tools.base import ERROR_META

TRANSIENT = {"nats_unavailable", "timeout"}
"""The codes a tool may answer while the cluster elects new leaders; anything else fails the test."""


class Tally:
    """What each tool call answered: the ok results, and the transient errors seen."""

    def __init__(self) -> None:
        self.transient: list[str] = []

    async def call(self, client: Client, tool: str, **args: Any) -> dict[str, Any] | None:
        result = await client.call_tool(tool, args)
        if not result.is_error:
            return result.structured_content or {}
        error = (result.meta or {}).get(ERROR_META) or {}
        code = error.get("code")
        assert code in TRANSIENT, (tool, error)
        self.transient.append(f"{tool}: {code}")
        return None


async def round_trip(tally: Tally, a: Client, b: Client, b_guid: str, n: int, acked: dict[str, set[str]]) -> None:
    """One round: a posts to a channel, a messages b, b offers a work item; what was acknowledged is remembered."""
    text = f"m-{n}"
    if await tally.call(a, "warp_channels_send", channel="roadmap", message=text) is not None:
        acked["channel"].add(text)
    if await tally.call(a, "warp_messages_send_direct", recipientGuid=b_guid, message=f"dm-{n}") is not None:
        acked["dm"].add(f"dm-{n}")
    offered = await tally.call(
        b, "warp_work_broadcast", taskId=f"t-{n}", description=f"do {n}", requiredCapability="python"
    )
    if offered is not None:
        acked["work"].add(offered["workItemId"])


async def drain(tally: Tally, a: Client, b: Client, acked: dict[str, set[str]], deadline: float) -> None:
    """Read back everything: the channel, b's inbox, and every work item claimed and completed by a."""
    seen_dm: set[str] = set()
    done: set[str] = set()
    while time.monotonic() < deadline and not (acked["dm"] <= seen_dm and acked["work"] <= done):
        inbox = await tally.call(b, "warp_messages_read_direct", limit=100)
        seen_dm |= {m["content"] for m in (inbox or {}).get("messages", [])}
        claimed = await tally.call(a, "warp_work_claim", capability="python", timeout=1000)
        item = (claimed or {}).get("workItem")
        if item is not None and await tally.call(a, "warp_work_complete", workItemId=item["id"]) is not None:
            done.add(item["id"])
    assert acked["dm"] <= seen_dm, sorted(acked["dm"] - seen_dm)
    assert acked["work"] <= done, sorted(acked["work"] - done)
    history: set[str] = set()
    cursor = None
    while True:
        page = await tally.call(a, "warp_channels_read", channel="roadmap", limit=1000, cursor=cursor)
        assert page is not None
        history |= {m["message"] for m in page["messages"]}
        cursor = page.get("nextCursor")
        if not cursor:
            break
    assert acked["channel"] <= history, sorted(acked["channel"] - history)


async def register_when_ready(tally: Tally, client: Client, *capabilities: str, within_s: float = 30.0) -> str:
    """Register (retrying transient errors: on a cluster, freshly made R3 streams answer once their leaders are
    elected) and return the agent's GUID."""
    deadline = time.monotonic() + within_s
    args: dict[str, Any] = {"agentType": "worker", "capabilities": list(capabilities)}
    while time.monotonic() < deadline:
        found = await tally.call(client, "warp_registry_register", **args)
        if found is not None:
            guid: str = found["agent"]["guid"]
            return guid
    raise AssertionError(f"could not register within {within_s} s: {tally.transient[-3:]}")
