"""The work-events boundary: a background loop that turns captured advisories and deadline timers into DLQ entries.

The events stream stores what happened while no server process was looking (a last lease that ran
out, a deadline that passed), so every server process runs this loop over the one shared durable
consumer: each event goes to one of them, and handling it twice is harmless (every step is
idempotent). Each round the loop also finishes DLQ retries left half-done by a process that died.
"""

from __future__ import annotations

import asyncio
import json
import logging

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.pull import Delivery, ack, pull
from nats_mcp.coord.work.service import WorkService
from nats_mcp.core.aiotasks import cancel_requested, stop_task

log = logging.getLogger("nats_mcp.coord.work.events")

PULL_WAIT_S = 2.0
"""Also how often consumers with handed-out items are poked (see :meth:`WorkExpiry.poke_consumers`)."""
BATCH = 16
RECOVER_EVERY_S = 1.0
"""At most this often (each round; when idle a round takes ``PULL_WAIT_S``), intents older than
``dlq.RECOVER_AFTER_S`` are finished: an abandoned DLQ retry is finished within a few seconds."""
SWEEP_EVERY_S = 5.0
"""How often blocked items are looked at for a release (or dead-letter) that a process dying half way left undone."""
ERROR_PAUSE_S = 2.0
MAX_ADVISORY = "io.nats.jetstream.advisory.v1.max_deliver"


class WorkEvents:
    """Runs while the server runs; started once the work resources exist."""

    def __init__(self, conn: NatsConnection, work: WorkService) -> None:
        self._conn = conn
        self._work = work
        self._layout = work.layout
        self._api = work.api
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="work-events")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_recover = next_sweep = loop.time()
        while True:
            try:
                if loop.time() >= next_recover:
                    await self._work.dlq_recover()
                    next_recover = loop.time() + RECOVER_EVERY_S
                if loop.time() >= next_sweep:
                    await self._work.deps.sweep()
                    next_sweep = loop.time() + SWEEP_EVERY_S
                await self._work.expiry.poke_consumers()
                await self.drain(wait_s=PULL_WAIT_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if cancel_requested():  # e.g. the cancel reached a read of the closing connection, turned into an error
                    raise asyncio.CancelledError from exc
                log.debug("work events paused: %s", exc)
                await asyncio.sleep(ERROR_PAUSE_S)

    async def tick(self) -> int:
        """One round without waiting: poke the work consumers, then handle what is there."""
        await self._work.expiry.poke_consumers()
        return await self.drain()

    async def drain(self, *, wait_s: float = 0.0) -> int:
        """Handle the events waiting now (waiting up to ``wait_s`` for a first one); returns how many were handled."""
        deliveries = await pull(
            self._conn.client,
            self._layout.events_stream,
            Layout.MOVER_CONSUMER,
            BATCH,
            wait_s=wait_s,
            prefix=self._api,
        )
        for delivery in deliveries:
            await self._handle(delivery)
        return len(deliveries)

    async def _handle(self, delivery: Delivery) -> None:
        nc = self._conn.client
        try:
            again = await self._dispatch(delivery)
        except Exception:
            log.warning("work event on %s failed; it is delivered again later", delivery.subject, exc_info=True)
            return  # not acknowledged: redelivered after the consumer's ack wait
        if again is not None:
            await ack(nc, delivery.reply, "-NAK", delay_s=again)
        else:
            await ack(nc, delivery.reply, "+ACK")

    async def _dispatch(self, delivery: Delivery) -> float | None:
        try:
            body = json.loads(delivery.data)
        except ValueError:
            log.warning("dropping an unreadable work event on %s", delivery.subject)
            return None
        if not isinstance(body, dict):
            return None
        if delivery.subject.startswith("$JS.EVENT.ADVISORY."):
            if body.get("type") == MAX_ADVISORY and body.get("stream") == self._layout.work_stream:
                await self._work.expiry.on_max_deliveries(int(body["stream_seq"]), int(body.get("deliveries", 0)))
            return None
        if delivery.subject.startswith(self._layout.deadline_due_subjects[:-1]):
            return await self._work.expiry.on_deadline(str(body["id"]), int(body["seq"]))
        return None
