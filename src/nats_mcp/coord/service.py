"""The domain facade: one object per server process that owns the coordination services and their lifecycle.

NATS may be down when the process starts: the services come up when the connection does (and come
back after a reconnect); calls made before that fail with ``nats_unavailable``. In local (stdio)
mode the process acts as one agent, whose GUID comes from the identity service's live-instance lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import getpass
import logging
import re
import socket
from typing import TYPE_CHECKING, Any

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.errors import BusError, NatsUnavailableError, translate
from nats_mcp.bus.layout import Layout
from nats_mcp.config.settings import Settings
from nats_mcp.coord.channels import ChannelService
from nats_mcp.coord.context import Caller, owner_key
from nats_mcp.coord.errors import Forbidden, InvalidName, LimitExceeded, NatsUnavailable, NotRegistered
from nats_mcp.coord.inbox import InboxService
from nats_mcp.coord.registry.identity import IdentityService
from nats_mcp.coord.registry.presence import GatewayPresence, PresenceKeeper
from nats_mcp.coord.registry.service import RegistryService
from nats_mcp.coord.reservations.service import ReservationService
from nats_mcp.coord.waits import Waits
from nats_mcp.coord.work.events import WorkEvents
from nats_mcp.coord.work.service import WorkService
from nats_mcp.core.aiotasks import stop_task
from nats_mcp.core.names import InvalidNameError, validate_name

if TYPE_CHECKING:
    from nats_mcp.coord.natsops.service import OpsService

log = logging.getLogger("nats_mcp.coord")

READY_WAIT_S = 10.0
SETUP_RETRY_MAX_S = 60.0
FIRST_CONNECT_WAIT_S = 3.0


def handle_from_agent_type(agent_type: str) -> str:
    """Warp's automatic handle: lower case, runs of spaces/underscores to '-', other characters dropped."""
    handle = re.sub(r"[\s_]+", "-", agent_type.strip().lower())
    handle = re.sub(r"[^a-z0-9-]", "", handle).strip("-")[:63]
    return handle or "agent"


class Coordinator:
    """Owns identity, registry, channels, inbox, work queues, reservations and presence for this process."""

    def __init__(self, conn: NatsConnection, settings: Settings, *, local_agent: bool = True) -> None:
        self.conn = conn
        self.local_agent = local_agent
        """False in gateway modes: callers are derived from principals, this process is nobody's agent."""
        self.settings = settings
        self.layout = Layout(settings.resolved_namespace)
        self.identity = IdentityService(conn, settings, self.layout)
        self.registry = RegistryService(conn, settings, self.layout)
        self.touch = GatewayPresence(self.registry, settings.presence.heartbeat_interval_s)
        """Gateway modes: call it with the caller of every call (its heartbeat); ``touch.leave`` when it leaves."""
        self.channels = ChannelService(conn, settings, self.layout)
        self.inbox = InboxService(conn, settings)
        self.work = WorkService(conn, settings, self.layout)
        self.waits = Waits(conn, self.layout)
        """Reads that wait for a message (``waitMs``); :meth:`Waits.stop_waiting` ends them (drain)."""
        self.reservations = ReservationService(conn, self.layout, self.registry.offline_since)
        self._work_events = WorkEvents(conn, self.work)
        self.hostname = socket.gethostname()
        self._local: Caller | None = None
        self._presence: PresenceKeeper | None = None
        self._ready = asyncio.Event()
        self._setup_lock = asyncio.Lock()
        self._setup_task: asyncio.Task[None] | None = None
        self._setup_delay = 1.0
        self._closed = False
        self.setup_error: BusError | None = None
        """Why the last setup attempt failed (None once it succeeded)."""

    @functools.cached_property
    def ops(self) -> OpsService:
        """The NATS operations facade (the nats_* tools), built on first use: a process that serves none of them
        (a human CLI command) does not import it (issue 22)."""
        from nats_mcp.coord.natsops.service import OpsService

        return OpsService(self.conn, self.settings)

    # -- lifecycle -------------------------------------------------------------------------------

    async def on_nats_event(self, event: str, _data: dict[str, Any]) -> None:
        """Connection observer: (re)build the services whenever NATS (re)connects."""
        if event in ("connected", "reconnected") and not self._closed:
            self._setup_task = asyncio.get_running_loop().create_task(self._setup(), name="coord-setup")

    async def _setup(self) -> None:
        async with self._setup_lock:
            try:
                await self.channels.ensure_streams()
                await self.registry.start()
                await self.work.ensure()
                await self.reservations.ensure()
                self._work_events.start()
                if self.local_agent and self._local is None:
                    guid = await self.identity.acquire()
                    self._local = self._make_caller(guid)
                    log.info("acting as agent %s in namespace %s", guid, self.layout.namespace)
                    self._presence = PresenceKeeper(
                        self.identity, self.registry, self._local, self.settings.presence.heartbeat_interval_s
                    )
                    self._presence.start()
                self._ready.set()
                self._setup_delay = 1.0
                self.setup_error = None
            except (BusError, NatsUnavailableError) as exc:
                self.setup_error = exc
                log.warning("coordination setup waits for NATS: %s", exc)
                self._retry_setup()
            except Exception as exc:
                self.setup_error = translate(exc)
                if self.setup_error is not None:
                    log.warning("coordination setup failed, retrying in %.0fs: %s", self._setup_delay, self.setup_error)
                else:
                    log.exception("coordination setup failed; retrying in %.0fs", self._setup_delay)
                self._retry_setup()

    def _retry_setup(self) -> None:
        """Try the setup again after a growing pause (1 s doubling to 60 s) while connected; a reconnect also does."""
        if self._closed or not self.conn.connected:
            return
        delay = self._setup_delay
        self._setup_delay = min(self._setup_delay * 2, SETUP_RETRY_MAX_S)

        async def later() -> None:
            await asyncio.sleep(delay)
            if not self._closed and self.conn.connected and not self._ready.is_set():
                await self._setup()

        self._setup_task = asyncio.get_running_loop().create_task(later(), name="coord-setup-retry")

    def _make_caller(self, guid: str) -> Caller:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        # The personal-scope key of the local user: a hash, so no OS user name is ever stored.
        return Caller(
            guid=guid,
            namespace=self.layout.namespace,
            project_id=self.settings.resolved_project_id,
            owner=owner_key(f"{self.hostname}/{user}"),
            hostname=self.hostname,
        )

    async def local_caller(self) -> Caller:
        """The agent this stdio process acts as, once NATS and the identity lease are there."""
        if self._local is not None and self._ready.is_set():
            return self._local
        if not self.conn.connected and (self._local is not None or not await self._first_connection()):
            raise NatsUnavailable(str(self.conn.unavailable()))
        try:
            await asyncio.wait_for(self._ready.wait(), READY_WAIT_S)
        except TimeoutError:
            failed = self.setup_error
            if failed is not None and failed.code == "limit_exceeded":  # not going to pass by waiting
                raise LimitExceeded(f"the coordination services cannot start: {failed}") from None
            raise NatsUnavailable(
                "the coordination services are still starting (NATS setup did not finish); retry in a moment"
            ) from None
        assert self._local is not None
        return self._local

    async def wait_ready(self, timeout: float) -> bool:
        """Whether the services were set up (streams, buckets, the work mover) within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _first_connection(self) -> bool:
        """A call that arrives while the process is still making its first connection waits for it, briefly."""
        return await self.conn.wait_connected(min(self.settings.nats.connect_timeout_s, FIRST_CONNECT_WAIT_S))

    async def close(self) -> None:
        """Clean shutdown: mark the local agent offline, give the lease back, stop background work."""
        self._closed = True
        await stop_task(self._setup_task)
        await self.waits.close()
        await self._work_events.stop()
        if self._presence is not None:
            await self._presence.stop()
        if self._local is not None and self.conn.connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.registry.mark_offline(self._local), 5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.identity.release(), 5)
        with contextlib.suppress(Exception):
            await self.reservations.close()
        with contextlib.suppress(Exception):
            await self.registry.close()
        with contextlib.suppress(Exception):
            await self.identity.close()

    # -- identity --------------------------------------------------------------------------------

    async def set_handle(self, caller: Caller, handle: str) -> str:
        try:
            validate_name(handle, "handle")
        except InvalidNameError as exc:
            raise InvalidName(str(exc)) from None
        await self.identity.set_handle(caller.guid, handle)
        await self.registry.set_handle(caller, handle)
        return handle

    async def get_handle(self, caller: Caller) -> str | None:
        return await self.identity.get_handle(caller.guid)

    async def require_handle(self, caller: Caller) -> str:
        handle = await self.get_handle(caller)
        if handle is None:
            raise NotRegistered("set a handle first with warp_handle_set (or register with warp_registry_register)")
        return handle

    async def require_registered_handle(self, caller: Caller) -> str:
        record = await self.registry.admission(caller)
        if record is None:
            raise NotRegistered("register first with warp_registry_register")
        return record.handle

    async def require_capability(self, caller: Caller, capability: str) -> None:
        """Claiming needs the caller registered with the capability (Warp's rule, checked against stored state)."""
        record = await self.registry.admission(caller, capability)
        if record is None:
            raise NotRegistered("register first with warp_registry_register, listing the capabilities you can work on")
        if capability not in record.capabilities:
            caps = ", ".join(record.capabilities) or "none"
            raise Forbidden(
                f'you do not have the capability "{capability}" registered (yours: {caps}); add it with '
                "warp_registry_update_presence"
            )
