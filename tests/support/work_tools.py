"""The work_* and registry tools called over an MCP client session, as agents use them."""

from __future__ import annotations

from typing import Any

from mcp import Client

from tests.support.stdio import ok

CAP = "python"


async def register(client: Client, *capabilities: str) -> str:
    """Register the agent (with these capabilities) and return its GUID, from the registration output."""
    args: dict[str, Any] = {"agentType": "worker"}
    if capabilities:
        args["capabilities"] = list(capabilities)
    agent_info = (await ok(client, "warp_registry_register", **args))["agent"]
    guid: str = agent_info["guid"]
    assert len(guid) == 32
    return guid


async def broadcast(client: Client, task: str, capability: str = CAP, priority: int = 5, **args: Any) -> str:
    out = await ok(
        client,
        "warp_work_broadcast",
        taskId=task,
        description=f"do {task}",
        requiredCapability=capability,
        priority=priority,
        **args,
    )
    assert (out["taskId"], out["capability"], out["priority"]) == (task, capability, priority)
    item_id: str = out["workItemId"]
    return item_id


async def claim(client: Client, capability: str = CAP, timeout: int = 0) -> dict[str, Any] | None:
    item: dict[str, Any] | None = (await ok(client, "warp_work_claim", capability=capability, timeout=timeout))[
        "workItem"
    ]
    return item


async def queues(client: Client, capability: str | None = None) -> dict[str, tuple[int, int, int]]:
    args = {"capability": capability} if capability else {}
    found = (await ok(client, "warp_work_queue_status", **args))["queues"]
    return {q["capability"]: (q["pending"], q["inFlight"], q["deadLettered"]) for q in found}


async def dlq(client: Client, capability: str | None = None) -> list[dict[str, Any]]:
    args = {"capability": capability} if capability else {}
    items: list[dict[str, Any]] = (await ok(client, "warp_dlq_list", **args))["items"]
    return items
