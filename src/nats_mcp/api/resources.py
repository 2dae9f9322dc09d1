"""The MCP resource boundary: channel history and a peek at one's own inbox as resources, with change notifications.

Resources:

- ``nats-mcp://channels/{channel}``: the newest :data:`HISTORY_LIMIT` messages of a configured channel,
  as JSON with the shape of the channels-read tool's result (its ``nextCursor`` continues with that tool).
- ``nats-mcp://inbox``: how many DMs wait in the caller's own inbox and the oldest :data:`PEEK_LIMIT`
  of them. Reading it never consumes a message; the read-direct tool does.
- ``nats-mcp://reservations``: the namespace's live reservations, as the reservations-list tool returns them;
  it changes with every acquire, renewal and release.

A URI that is malformed or names no configured channel is ``INVALID_PARAMS``; a domain failure keeps
its stable code in the error's ``data.code`` (``nats_unavailable`` is retryable). ``resources/read`` of a URI
that names no resource answers as the negotiated revision says: ``-32002`` (resource not found) up to
2025-11-25, ``INVALID_PARAMS`` from 2026-07-28 (SEP-2164); both with the URI in ``data.uri``.

Change notifications (``notifications/resources/updated``) come from core-NATS change signals
(:mod:`nats_mcp.coord.watch`), coalesced to at most one per URI per :data:`NOTIFY_INTERVAL_S` per
subscriber, and reach the client by the revision's own means:

- 2025-11-25 (handshake): ``resources/subscribe`` / ``resources/unsubscribe``; notifications go out on
  the connection's standalone channel. The watches of a connection end with it: they are registered on
  the connection's exit stack (reached through the request's session, see :func:`connection_of`).
- 2026-07-28: ``subscriptions/listen`` with ``resourceSubscriptions``; each listen stream gets its own
  watches and an SDK :class:`~mcp.server.subscriptions.ListenHandler` over a private bus (so one
  caller's inbox signals can never reach another caller's stream); they end with the stream.

Every way in passes the guard as a read does: each URI of a subscribe or a listen is authorized, rate
limited and audited as the read it amounts to (:data:`Gate`), and each subscription or listen stream takes
a slot of its pool (:data:`Slot`: a per-principal share and a process-wide cap) until it ends.

No NATS code here: subjects, subscriptions and reconnects belong to ``coord``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

from nats_mcp.api.resource_feeds import PROCESS_FEED, Feed, connection_of, nothing_held
from nats_mcp.api.resource_uris import (
    CHANNEL_TEMPLATE,
    INBOX_URI,
    RESERVATIONS_URI,
    RESOURCE_NOT_FOUND,
    ChannelResource,
    InboxPeek,
    ReservationsResource,
    ResourceRef,
    ResourceUriError,
    channel_uri,
    mcp_error,
    not_found,
    parse_uri,
)
from nats_mcp.api.tools.channels import ChannelsReadOut
from nats_mcp.api.tools.reservations import ListOut as ReservationsOut
from nats_mcp.coord.context import Caller
from nats_mcp.coord.service import Coordinator
from nats_mcp.coord.watch import ChangeWatcher, Watch
from nats_mcp.security.guard import Pool

__all__ = [
    "CHANNEL_TEMPLATE",
    "INBOX_URI",
    "LISTEN_TOOL",
    "RESOURCE_NOT_FOUND",
    "ResourceSurface",
    "channel_uri",
]

log = logging.getLogger("nats_mcp.api.resources")

MIME_TYPE = "application/json"
HISTORY_LIMIT = 20
PEEK_LIMIT = 20
NOTIFY_INTERVAL_S = 0.1
LISTEN_TOOL = "subscriptions_listen"
"""What the audit calls a listen stream that names no resource (each named resource is audited as its read)."""
CLOSE_TIMEOUT_S = 5.0

CallerProvider = Callable[[], Awaitable[Caller]]


# -- the surface ----------------------------------------------------------------------------------


T = TypeVar("T")


class Gate(Protocol):
    """Runs a resource request as the tool call it amounts to, through the guard (which may refuse it)."""

    async def __call__(
        self, ctx: ServerRequestContext[Any], tool: str, args: dict[str, Any], run: Callable[[], Awaitable[T]]
    ) -> T: ...


class Slot(Protocol):
    """Takes one slot of a pool for the caller and returns what gives it back; refuses (INVALID_PARAMS with the
    contract's ``limit_exceeded``) when the caller's share or the whole pool is taken. ``tool`` None: a listen
    naming no resource, which the slot also limits and audits (no read was gated for it)."""

    def __call__(self, ctx: ServerRequestContext[Any], pool: Pool, tool: str | None) -> Callable[[], None]: ...


def no_slot(ctx: ServerRequestContext[Any], pool: Pool, tool: str | None) -> Callable[[], None]:
    """No guard: slots are not counted (tests of the bare surface)."""
    del ctx, pool, tool
    return nothing_held


class OpenGate:
    """No guard: every request goes through (tests of the bare surface)."""

    async def __call__(
        self, ctx: ServerRequestContext[Any], tool: str, args: dict[str, Any], run: Callable[[], Awaitable[T]]
    ) -> T:
        return await run()


async def _nothing() -> None:
    return None


def _as_tool(ref: ResourceRef) -> tuple[str, dict[str, Any]]:
    """The tool a resource read amounts to, for the policy: a channel's history, or one's own inbox."""
    if isinstance(ref, ChannelResource):
        return "channels_read", {"channel": ref.channel}
    if isinstance(ref, ReservationsResource):
        return "reservations_list", {}
    return "messages_read_direct", {}


class ResourceSurface:
    """The resource handlers of one server: list, templates, read, subscribe/unsubscribe, listen."""

    def __init__(
        self,
        coordinator: Coordinator,
        caller: CallerProvider,
        prefix: str = "warp_",
        *,
        interval: float = NOTIFY_INTERVAL_S,
        watcher: ChangeWatcher | None = None,
        gate: Gate | None = None,
        slot: Slot | None = None,
    ) -> None:
        self._gate: Gate = gate if gate is not None else OpenGate()
        self._slot: Slot = slot if slot is not None else no_slot
        self._coordinator = coordinator
        self._caller = caller
        self._prefix = prefix
        self.interval = interval
        self.watcher = watcher or coordinator.waits.watcher  # one subscription per subject for feeds and waits
        self._feeds: dict[object, Feed] = {}

    # -- listing ---------------------------------------------------------------------------------

    async def list_resources(
        self, _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        p = self._prefix
        resources = [
            types.Resource(
                uri=channel_uri(ch.name),
                name=f"channel-{ch.name}",
                title=f"#{ch.name}: recent history",
                description=f"The newest {HISTORY_LIMIT} messages of #{ch.name} ({ch.description}), oldest first; "
                f"page further back with {p}channels_read and nextCursor. Subscribe to hear of new messages.",
                mime_type=MIME_TYPE,
            )
            for ch in self._coordinator.channels.list()
        ]
        resources.append(
            types.Resource(
                uri=INBOX_URI,
                name="inbox",
                title="Your inbox (peek)",
                description=f"How many direct messages wait for you and the oldest {PEEK_LIMIT} of them. Reading "
                f"this consumes nothing; {p}messages_read_direct reads and consumes. Subscribe to hear of new mail.",
                mime_type=MIME_TYPE,
            )
        )
        resources.append(
            types.Resource(
                uri=RESERVATIONS_URI,
                name="reservations",
                title="Reservations of project paths",
                description=f"Who holds which paths and globs of the project, why, and until when (as "
                f"{p}reservations_list). Subscribe to hear of every acquire, renewal and release.",
                mime_type=MIME_TYPE,
            )
        )
        return types.ListResourcesResult(resources=resources)

    async def list_templates(
        self, _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        template = types.ResourceTemplate(
            uri_template=CHANNEL_TEMPLATE,
            name="channel",
            title="A channel's recent history",
            description=f"The newest {HISTORY_LIMIT} messages of a configured channel (see "
            f"{self._prefix}channels_list), as JSON.",
            mime_type=MIME_TYPE,
        )
        return types.ListResourceTemplatesResult(resource_templates=[template])

    # -- reading ---------------------------------------------------------------------------------

    def resolve(self, uri: object) -> ResourceRef:
        """A URI of one of our resources (a configured channel or the inbox), or INVALID_PARAMS."""
        try:
            ref = parse_uri(uri)
        except ResourceUriError as exc:
            raise mcp_error(exc) from None
        names = [c.name for c in self._coordinator.channels.list()]
        if isinstance(ref, ChannelResource) and ref.channel not in names:
            known = ", ".join(names) or "(none)"
            raise MCPError(
                types.INVALID_PARAMS,
                f"channel {ref.channel!r} is not configured; configured channels: {known}",
                {"code": "not_found"},
            )
        return ref

    async def read_resource(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        try:
            ref = self.resolve(params.uri)
        except MCPError as exc:
            raise not_found(exc, params.uri, ctx.protocol_version) from None
        tool, args = _as_tool(ref)
        return await self._gate(ctx, tool, args, lambda: self._read(ref))

    async def _read(self, ref: ResourceRef) -> types.ReadResourceResult:
        try:
            caller = await self._caller()
            if isinstance(ref, ChannelResource):
                page = await self._coordinator.channels.read(caller, ref.channel, limit=HISTORY_LIMIT)
                body: BaseModel = ChannelsReadOut(
                    channel=ref.channel,
                    messages=page.messages,
                    nextCursor=page.next_cursor,
                    hasMore=page.has_more,
                    total=page.total,
                )
            elif isinstance(ref, ReservationsResource):
                held = await self._coordinator.reservations.current()
                body = ReservationsOut(reservations=[r.info() for r in held], count=len(held))
            else:
                count, messages = await self._coordinator.inbox.peek(caller, limit=PEEK_LIMIT)
                body = InboxPeek(agentGuid=caller.guid, count=count, messages=messages, hasMore=count > len(messages))
        except Exception as exc:
            raise mcp_error(exc) from None
        text = body.model_dump_json()
        # Private and immediately stale: the inbox is the caller's own, and both change with every message.
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=ref.uri, mime_type=MIME_TYPE, text=text)],
            ttl_ms=0,
            cache_scope="private",
        )

    # -- change signals --------------------------------------------------------------------------

    async def watch(self, ref: ResourceRef, listener: Callable[[], None]) -> Watch:
        try:
            if isinstance(ref, ChannelResource):
                return await self.watcher.channel(ref.channel, listener)
            if isinstance(ref, ReservationsResource):
                return await self.watcher.reservations(listener)
            return await self.watcher.inbox(await self._caller(), listener)
        except Exception as exc:
            raise mcp_error(exc) from None

    # 2025-11-25: resources/subscribe and resources/unsubscribe

    async def subscribe(
        self, ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        ref = self.resolve(params.uri)
        tool, args = _as_tool(ref)
        await self._gate(ctx, tool, args, _nothing)
        feed = self._feed_of(ctx)
        if ref.uri not in feed.uris:  # a repeated subscribe holds no second slot (add() re-checks under its lock)
            await feed.add(ref, self._slot(ctx, "watches", tool))
        return types.EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        ref = self.resolve(params.uri)
        connection = connection_of(ctx)
        feed = self._feeds.get(connection if connection is not None else PROCESS_FEED)
        if feed is not None:
            await feed.remove(ref.uri)
        return types.EmptyResult()

    def _feed_of(self, ctx: ServerRequestContext[Any]) -> Feed:
        connection = connection_of(ctx)
        key = connection if connection is not None else PROCESS_FEED
        feed = self._feeds.get(key)
        if feed is None:
            session = ctx.session

            async def send(uri: str) -> None:
                await session.send_resource_updated(uri)

            feed = self._feeds[key] = Feed(self, send)
            if connection is not None:
                connection.exit_stack.push_async_callback(self._drop_feed, key)
        return feed

    async def _drop_feed(self, key: object) -> None:
        feed = self._feeds.pop(key, None)
        if feed is not None:
            await feed.close()

    # 2026-07-28: subscriptions/listen

    async def listen(
        self, ctx: ServerRequestContext[Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """One listen stream: watches for its resource URIs, the SDK's handler for the stream itself.

        Each URI is authorized, rate limited and audited as the read it amounts to, as ``resources/subscribe`` is;
        the stream takes a slot of the ``listen`` pool (the caller's share and the process's cap) until it ends.
        """
        refs = {ref.uri: ref for ref in map(self.resolve, params.notifications.resource_subscriptions or ())}
        for ref in refs.values():
            tool, args = _as_tool(ref)
            await self._gate(ctx, tool, args, _nothing)
        release = self._slot(ctx, "listen", None if not refs else LISTEN_TOOL)
        bus = InMemorySubscriptionBus()

        async def send(uri: str) -> None:
            await bus.publish(ResourceUpdated(uri=uri))

        feed = Feed(self, send)
        try:
            for ref in refs.values():
                await feed.add(ref)
            return await ListenHandler(bus, max_subscriptions=1)(ctx, params)
        finally:
            release()
            with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):  # runs when the client cancels the stream
                await feed.close()

    # -- lifecycle -------------------------------------------------------------------------------

    async def close_feeds(self) -> None:
        """End every 2025-era subscription (the server stopped)."""
        for key in list(self._feeds):
            await self._drop_feed(key)

    @contextlib.asynccontextmanager
    async def lifespan(self, _server: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        """Server lifespan: subscriptions do not outlive ``Server.run``."""
        try:
            yield {}
        finally:
            with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                await self.close_feeds()
