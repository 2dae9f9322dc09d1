"""A WorkService on a real NATS server and the offer/claim helpers of the work queue tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from nats_mcp.bus.layout import Layout
from nats_mcp.coord.context import Caller
from nats_mcp.coord.work.service import WorkService
from tests.support.env import connected
from tests.support.natsserver import NatsServer

NS = "work-a"


CAP = "python"


FAST = {
    "NATS_MCP_WORK_ACK_TIMEOUT_MS": "1000",
    "NATS_MCP_WORK_MAX_ATTEMPTS": "3",
    "NATS_MCP_WORK_RETRY_BACKOFF_MS": "300,600",
    "NATS_MCP_NAMESPACE": NS,
}


def caller(namespace: str = NS) -> Caller:
    return Caller(guid=uuid.uuid4().hex, namespace=namespace, project_id="0123456789abcdef", owner="o")


@asynccontextmanager
async def service(
    tmp_path: Path, server: NatsServer, base: dict[str, str] = FAST, **env: str
) -> AsyncIterator[WorkService]:
    """A WorkService in its own connection: one server process."""
    settings_env = {**base, **env}
    async with connected(tmp_path / uuid.uuid4().hex[:8], server.url, **settings_env) as conn:
        work = WorkService(conn, conn.settings, Layout(conn.settings.resolved_namespace))
        await work.ensure()
        yield work


async def offer(work: WorkService, task: str = "t", *, priority: int = 5, **kw: Any) -> str:
    item = await work.broadcast(
        caller(), task_id=task, description=f"do {task}", capability=CAP, priority=priority, **kw
    )
    return item.id


async def claim_one(work: WorkService, who: Caller, timeout_ms: int = 0) -> Any:
    got = await work.claim(who, CAP, timeout_ms=timeout_ms)
    return got[0] if got else None


async def dead(work: WorkService, n: int) -> list[str]:
    ids = []
    me = caller()
    for i in range(n):
        item_id = await offer(work, f"dead-{i}")
        assert (await claim_one(work, me)).id == item_id
        await work.fail(me, item_id, f"boom {i}", recoverable=False)
        ids.append(item_id)
    return ids
