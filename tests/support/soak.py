"""The soak's mixed load through one HTTP gateway, shared by tests/soak (nothing lost, memory bounded) and
bench/soak.py (latency and memory over time, as ratios): agents, their calls, the counts they keep."""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from mcp import Client

UNLIMITED = {
    f"NATS_MCP_SECURITY_RATE_PER_{who}_{what}": value
    for who in ("PRINCIPAL", "ADDRESS")
    for what, value in (("RATE_PER_S", "1000000"), ("BURST", "10000000"))
}
UNLIMITED["NATS_MCP_SECURITY_MAX_AGENTS_PER_PRINCIPAL"] = "100000"  # one key runs every agent of the soak
UNLIMITED["NATS_MCP_SECURITY_POOLS_CLAIM_WAITS_PER_PRINCIPAL"] = "100000"  # ... and every agent's waiting claim
CAPABILITY = "soak"


def rss_kib(pid: int) -> int:
    """The resident memory of a Linux process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


async def call_ok(client: Client, tool: str, **args: object) -> dict[str, object]:
    """A tool call that has to succeed (the soak's first claim: every call answers ok)."""
    result = await client.call_tool(tool, args)
    assert not result.is_error, (tool, result.structured_content, result.content)
    return result.structured_content or {}


@dataclass
class Tally:
    """What the agents did: calls, work broadcast and completed, and (start, duration) of every call."""

    calls: int = 0
    broadcast: int = 0
    completed: int = 0
    samples: list[tuple[float, float]] = field(default_factory=list)


async def register(clients: list[Client]) -> list[str]:
    """A handle and a registration for each agent; their guids (the DM recipients)."""
    guids = []
    for client in clients:
        await call_ok(client, "warp_handle_set", handle="soaker")
        registered = await call_ok(client, "warp_registry_register", agentType="soak", capabilities=[CAPABILITY])
        guids.append(str(registered["agent"]["guid"]))  # type: ignore[index]
    return guids


async def agent_loop(client: Client, me: int, guids: list[str], ends: float, tally: Tally) -> None:
    """Mixed load until ``ends`` (monotonic): post, read, DM, offer/claim/complete work, discover."""
    rng = random.Random(me)
    step = 0
    while time.monotonic() < ends:
        started = time.monotonic()
        kind = step % 6
        if kind == 0:
            await call_ok(client, "warp_channels_send", channel="roadmap", message=f"agent {me} says {step}")
        elif kind == 1:
            await call_ok(client, "warp_channels_read", channel="roadmap", limit=20)
        elif kind == 2:
            await call_ok(client, "warp_messages_send_direct", recipientGuid=rng.choice(guids), message="ping")
        elif kind == 3:
            await call_ok(client, "warp_messages_read_direct", limit=20)
        elif kind == 4:
            await call_ok(
                client, "warp_work_broadcast", taskId=f"{me}-{step}", description="soak", requiredCapability=CAPABILITY
            )
            tally.broadcast += 1
            await claim_and_complete(client, tally, timeout_ms=5000)
        else:
            await call_ok(client, "warp_registry_discover", limit=20)
        tally.samples.append((started, time.monotonic() - started))
        tally.calls += 1
        step += 1


async def claim_and_complete(client: Client, tally: Tally, timeout_ms: int) -> bool:
    """Claim one item of the soak's capability and complete it; False when the queue had none."""
    claimed = (await call_ok(client, "warp_work_claim", capability=CAPABILITY, timeout=timeout_ms))["workItem"]
    if not isinstance(claimed, dict):
        return False
    await call_ok(client, "warp_work_complete", workItemId=claimed["id"])
    tally.completed += 1
    return True


async def drain(client: Client, tally: Tally) -> None:
    """Complete what the agents left queued (a claim may have found another agent's item first)."""
    while await claim_and_complete(client, tally, timeout_ms=1000):
        pass


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) >= 2 else values[0]
