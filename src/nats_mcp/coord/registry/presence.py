"""The presence boundary: how agents' registry entries learn they are alive, and that they left.

A local agent process runs :class:`PresenceKeeper`, the loop that renews its identity lease and heartbeats its
entry. Warp's heartbeat died on ``update_presence(offline)`` and never came back, and a crashed agent stayed
online forever. Here the loop never stops on its own: the registry decides per beat whether to write
(an agent set offline is not heartbeated; set online again, it is at the next beat), readers compute
staleness from the last heartbeat, and every failure — NATS being away included — is logged once per
kind and retried at the next beat.

Agents of the gateways (HTTP, gRPC) have no process of their own: :class:`GatewayPresence` counts their calls
as their heartbeat, and the end of their MCP session as their leaving, like a local agent's process exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

from nats_mcp.bus.errors import NatsUnavailableError
from nats_mcp.coord.context import Caller
from nats_mcp.coord.registry.identity import IdentityService
from nats_mcp.coord.registry.service import RegistryService
from nats_mcp.core.aiotasks import cancel_requested, stop_task

log = logging.getLogger("nats_mcp.coord.registry.presence")

T = TypeVar("T")
MAX_TRACKED_AGENTS = 100_000


class PresenceKeeper:
    """Every ``interval`` seconds: renew the lease, then heartbeat the registry entry (first beat at once)."""

    def __init__(self, identity: IdentityService, registry: RegistryService, caller: Caller, interval: float) -> None:
        self.identity = identity
        self.registry = registry
        self.caller = caller
        self.interval = interval
        self.beats = 0
        """Heartbeats written (for health checks and tests)."""
        self._task: asyncio.Task[None] | None = None
        self._failing: dict[str, str] = {}

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"presence-{self.caller.guid[:8]}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def _run(self) -> None:
        next_beat = time.monotonic()
        while True:
            await self.beat()
            # A fixed cadence that does not drift; after a long stall, skip the missed beats.
            next_beat = max(next_beat + self.interval, time.monotonic())
            await asyncio.sleep(next_beat - time.monotonic())

    async def beat(self) -> None:
        """One renewal and one heartbeat; never raises (except cancellation)."""
        await self._attempt("lease", self.identity.renew())
        written = await self._attempt("heartbeat", self.registry.heartbeat(self.caller))
        if written:
            self.beats += 1

    async def _attempt(self, what: str, call: Awaitable[T]) -> T | None:
        try:
            result = await call
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if cancel_requested():  # the stop's cancel, turned into an error by a read of the closing connection
                raise asyncio.CancelledError from exc
            self._report(what, exc)
            return None
        if self._failing.pop(what, None) is not None:
            log.info("presence %s of agent %s works again", what, self.caller.guid)
        return result

    def _report(self, what: str, exc: Exception) -> None:
        """Warn when a failure starts or changes; repeats of the same one (a NATS outage) go to debug."""
        text = f"{type(exc).__name__}: {exc}"
        repeated = self._failing.get(what) == text or (isinstance(exc, NatsUnavailableError) and what in self._failing)
        self._failing[what] = text
        level = logging.DEBUG if repeated else logging.WARNING
        log.log(level, "presence %s of agent %s failed (retried each beat): %s", what, self.caller.guid, text)


class GatewayPresence:
    """Presence of the agents a gateway process serves: call it on every call (the heartbeat), :meth:`leave` when
    an agent's session ends. All state that readers see is the registry entry in NATS; this object only remembers
    when it last wrote each heartbeat, so that an agent calling often costs one write an interval."""

    def __init__(self, registry: RegistryService, interval: float) -> None:
        self.registry = registry
        self.interval = interval
        self._beats: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, caller: Caller) -> None:
        """A call from an agent counts as its heartbeat (written at most once an interval, in the background), so
        agents that keep calling read as online without a process of their own."""
        now = time.monotonic()
        if now - self._beats.get(caller.guid, -self.interval) < self.interval:
            return
        self._beats[caller.guid] = now
        if len(self._beats) > MAX_TRACKED_AGENTS:
            self._beats.pop(next(iter(self._beats)))

        async def beat() -> None:
            with contextlib.suppress(Exception):  # not registered yet, or NATS away: the next call tries again
                await self.registry.heartbeat(caller)

        task = asyncio.get_running_loop().create_task(beat(), name="gateway-heartbeat")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def leave(self, caller: Caller) -> None:
        """The agent's session ended: mark its entry offline (as a local agent's process exit does). Like there,
        it reads online again once it registers again; an entry set offline is not heartbeated."""
        self._beats.pop(caller.guid, None)
        await self.registry.mark_offline(caller)
