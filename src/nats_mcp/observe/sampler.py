"""The gauge-sampling boundary: reads agents by status and work per capability every few seconds, so a scrape
never waits on NATS.

It reads the domain's read-only queries only (the registry's watched copy, the work queue status);
``coord/`` never imports this module — the sampler is handed the queries where the server is assembled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from nats_mcp.core.aiotasks import stop_task
from nats_mcp.observe.metrics import Metrics

if TYPE_CHECKING:
    from nats_mcp.coord.service import Coordinator

log = logging.getLogger("nats_mcp.observe")

WorkRow = tuple[str, int, int, int]
"""capability, pending, in flight, dead-lettered"""


class Sampler:
    """One background task that refreshes the sampled gauges of ``metrics``."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        connected: Callable[[], bool],
        agents: Callable[[], Mapping[str, int]],
        work: Callable[[], Awaitable[Iterable[WorkRow]]],
        interval_s: float,
        max_capabilities: int,
    ) -> None:
        self.metrics = metrics
        self.connected = connected
        self.agents = agents
        self.work = work
        self.interval_s = interval_s
        self.max_capabilities = max_capabilities
        self.samples = 0
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="metrics-sampler")

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def sample(self) -> bool:
        """Read once; True when the gauges were refreshed (False while NATS is away or a query failed)."""
        up = self.connected()
        self.metrics.nats_connected.set(1 if up else 0)
        if not up:
            return False
        try:
            rows = list(await self.work())
            counts = self.agents()
        except Exception as exc:
            self.metrics.sample_errors.inc()
            if not self._failing:  # once per failing spell, not every few seconds
                log.warning("metrics sampling failed: %s", exc)
            self._failing = True
            return False
        self._failing = False
        self.metrics.set_agents(counts)
        self.metrics.set_work(rows, self.max_capabilities)
        self.metrics.sample_age.set(time.time())
        self.samples += 1
        return True

    async def _loop(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval_s)


def coordinator_sampler(metrics: Metrics, coord: Coordinator, interval_s: float, max_capabilities: int) -> Sampler:
    """The sampler over a coordinator's read-only queries."""

    async def work() -> list[WorkRow]:
        return [(q.capability, q.pending, q.inFlight, q.deadLettered) for q in await coord.work.views.status()]

    return Sampler(
        metrics,
        connected=lambda: coord.conn.connected,
        agents=coord.registry.status_counts,
        work=work,
        interval_s=interval_s,
        max_capabilities=max_capabilities,
    )
