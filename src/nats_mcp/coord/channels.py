"""The channel boundary: configured, namespaced message history on JetStream (send, page back, poll forward, status).

One stream per channel and namespace keeps the history; reading never consumes. Reads use batched
direct gets (:mod:`nats_mcp.bus.directget`), so a page costs O(limit) whatever the history length: one
stream-info call (first/last sequence, message count) and usually one batch. Cursors hold a sequence
bound, never an offset, so pages stay stable while messages arrive, are deleted or age out.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, create_model

from nats_mcp.bus import specs
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import DirectGetUnavailable, StoredMsg, api_prefix, get_batch, last_at_or_before
from nats_mcp.bus.errors import (
    BusError,
    ConnectionLost,
    JetStreamError,
    JetStreamUnavailable,
    NatsTimeout,
    NatsUnavailableError,
    NoStreamResponse,
    ResourceNotFound,
    nats_edge,
    origin,
    translate,
)
from nats_mcp.bus.jstypes import Client
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.publish import store
from nats_mcp.bus.setup import ensure_stream
from nats_mcp.bus.specs import StreamConfig, StreamState
from nats_mcp.config.coordination import ChannelSettings
from nats_mcp.config.settings import Settings
from nats_mcp.coord import capscope
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import InvalidArgument, InvalidName, LimitExceeded, NotFound
from nats_mcp.coord.models import ChannelInfo, ChannelMessage, ChannelStatus, Scope
from nats_mcp.coord.pagination import int_position, make_cursor, read_cursor
from nats_mcp.core import reqctx
from nats_mcp.core.names import InvalidNameError, validate_name

log = logging.getLogger("nats_mcp.coord.channels")

READ_TOOL = "warp_channels_read"
MAX_LIMIT = 1000
WINDOW_GROWTH_CAP = 4
"""A backward window spans at most this many times the messages still needed: wider windows save round
trips over sparse history, but a window that turns out dense is fetched whole (bounded over-fetch)."""
REQUEST_TIMEOUT_S = 5.0
MAX_SEQUENCE = 2**63 - 1

Mode = Literal["back", "forward"]
_SCOPES: tuple[str, ...] = get_args(Scope)
_STORED = create_model(  # type: ignore[call-overload]
    "StoredChannelMessage",
    __config__=ConfigDict(extra="ignore"),
    **{name: (field.annotation, field) for name, field in ChannelMessage.model_fields.items() if name != "sequence"},
)
"""A stored message's body as ChannelMessage reads it, minus the sequence (the stream's), other fields ignored."""
_Stored = list[StoredMsg]
_LOST = frozenset(
    {"ConnectionClosedError", "ConnectionReconnectingError", "StaleConnectionError", "UnexpectedEOF", "NoServersError"}
)
"""The lost-connection failures a channel call reports as NATS being away (besides every timeout)."""


@dataclass(frozen=True)
class ChannelPage:
    """One page of a channel's history, oldest message first."""

    channel: str
    messages: list[ChannelMessage]
    next_cursor: str | None
    has_more: bool
    total: int


class ChannelService:
    """Channels of one namespace: the configured list, their streams, sending, reading and status."""

    def __init__(self, conn: NatsConnection, settings: Settings, layout: Layout) -> None:
        self._conn = conn
        self._settings = settings
        self._layout = layout
        self._channels = {c.name: c for c in settings.channels}
        self._ready: set[str] = set()
        self._api = api_prefix(settings.nats.jetstream_domain)

    # -- configuration and streams -------------------------------------------------------------

    def list(self) -> builtins.list[ChannelInfo]:
        """The configured channels (from settings; NATS is not asked)."""
        return [
            ChannelInfo(
                name=c.name,
                description=c.description,
                maxMessages=c.max_messages,
                maxBytes=c.max_bytes,
                maxAge=c.max_age,
            )
            for c in self._channels.values()
        ]

    async def ensure_streams(self) -> None:
        """Create every configured channel's stream, or bring an existing one to the configured limits.

        A channel JetStream has no room for is left out (logged): every other service still starts, and that
        channel's tools answer ``limit_exceeded`` with the reason (it is tried again on first use).
        """
        results = await asyncio.gather(*(self._ensure(c) for c in self._channels.values()), return_exceptions=True)
        for channel, result in zip(self._channels.values(), results, strict=True):
            if not isinstance(result, BaseException):
                continue
            known = result if isinstance(result, BusError) else translate(result)
            if known is None or known.code != "limit_exceeded":
                raise result
            log.warning("channel %s has no stream yet: %s", channel.name, known)

    def stream_config(self, channel: ChannelSettings) -> StreamConfig:
        """The stream a channel is stored in: file storage, limits from settings, direct gets allowed."""
        return specs.channel_stream(
            self._layout,
            channel.name,
            description=channel.description,
            max_messages=channel.max_messages,
            max_bytes=channel.max_bytes,
            max_age_s=channel.max_age_seconds,
        )

    async def _ensure(self, channel: ChannelSettings) -> StreamState:
        with self._bus():
            info = await ensure_stream(self._conn.jetstream, self.stream_config(channel), replicas=self._conn.replicas)
        self._ready.add(channel.name)
        return info.state

    async def _state(self, channel: ChannelSettings) -> StreamState:
        """The stream's counters, creating the stream on first use (lazily, if ensure_streams did not run)."""
        if channel.name not in self._ready:
            return await self._ensure(channel)
        try:
            with nats_edge(), self._bus():
                info = await self._conn.jetstream.stream_info(self._layout.channel_stream(channel.name))
        except ResourceNotFound:
            self._ready.discard(channel.name)
            return await self._ensure(channel)
        return info.state

    # -- send ----------------------------------------------------------------------------------

    async def send(
        self, caller: Caller, handle: str, channel: str, message: str, scope: Scope | None = None
    ) -> ChannelMessage:
        """Store a message; the sender fields come from ``caller`` and ``handle`` (the server's identity)."""
        chan = self._channel(channel)
        self._check_message(message)
        record = ChannelMessage(
            id=reqctx.new_uuid(),
            sequence=0,
            handle=_name(handle, "handle"),
            senderGuid=caller.guid,
            message=message,
            timestamp=_now(),
            scope=_scope(scope),
        )
        payload = record.model_dump_json(exclude={"sequence"}, exclude_none=True).encode()
        seq = await self._publish(chan, payload, record.id)
        return record.model_copy(update={"sequence": seq})

    def _check_message(self, message: object) -> None:
        if not isinstance(message, str) or not message.strip():
            raise InvalidArgument("message must not be empty")
        size, limit = len(message.encode()), self._settings.limits.message_bytes
        if size > limit:
            raise LimitExceeded(f"message is {size} bytes of UTF-8; the limit is {limit} bytes: shorten or split it")

    async def _publish(self, channel: ChannelSettings, payload: bytes, msg_id: str) -> int:
        self._check_payload(len(payload))
        if channel.name not in self._ready:
            await self._ensure(channel)
        try:
            with nats_edge():
                return await self._publish_once(channel, payload, msg_id)
        except NoStreamResponse:
            # The stream went away (deleted, or a fresh server): recreate it; the message id dedupes a retry.
            log.warning("stream of channel %s is missing; recreating it", channel.name)
            await self._ensure(channel)
            return await self._publish_once(channel, payload, msg_id)

    async def _publish_once(self, channel: ChannelSettings, payload: bytes, msg_id: str) -> int:
        with self._bus():
            return await store(
                self._conn.jetstream,
                self._layout.channel_subject(channel.name),
                payload,
                stream=self._layout.channel_stream(channel.name),
                msg_id=msg_id,
            )

    def _check_payload(self, size: int) -> None:
        # JSON escaping can grow a message past what NATS carries; refuse rather than fail half-way.
        max_payload = self._conn.client.max_payload
        if size > max_payload:
            raise LimitExceeded(
                f"the stored message would be {size} bytes, over the NATS maximum payload of {max_payload} bytes"
            )

    # -- read ----------------------------------------------------------------------------------

    async def read(
        self,
        caller: Caller,
        channel: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        after_sequence: int | None = None,
    ) -> ChannelPage:
        """A page of history: without ``after_sequence`` the newest messages, paging back in time; with it,
        the messages after that sequence, paging forward (polling). Each page is ordered oldest first."""
        chan = self._channel(channel)
        _check_limit(limit)
        mode: Mode = "back" if after_sequence is None else "forward"
        filters = {"channel": chan.name, "mode": mode}
        position = read_cursor(cursor, READ_TOOL, self._layout.namespace, filters) if cursor is not None else None
        if mode == "forward":
            after = int_position(position, "a") if position is not None else _check_after(after_sequence)
            return await self._read_forward(chan, after, limit, filters)
        before = int_position(position, "b", minimum=1) if position is not None else None
        return await self._read_back(chan, before, limit, filters)

    async def _read_back(
        self, channel: ChannelSettings, before: int | None, limit: int, filters: dict[str, Any]
    ) -> ChannelPage:
        state = await self._state(channel)
        end = state.last_seq if before is None else min(before - 1, state.last_seq)
        stored = await self._collect_back(channel, end, max(state.first_seq, 1), limit)
        has_more = bool(stored) and stored[0].seq > state.first_seq
        next_cursor = self._cursor(filters, {"b": stored[0].seq}) if has_more else None
        return ChannelPage(channel.name, _decode_all(stored), next_cursor, has_more, state.messages)

    async def _read_forward(
        self, channel: ChannelSettings, after: int, limit: int, filters: dict[str, Any]
    ) -> ChannelPage:
        state, batch = await asyncio.gather(self._state(channel), self._batch(channel, after + 1, limit))
        stored, pending = batch
        has_more = pending > 0
        next_cursor = self._cursor(filters, {"a": stored[-1].seq}) if has_more and stored else None
        return ChannelPage(channel.name, _decode_all(stored), next_cursor, has_more, state.messages)

    async def _collect_back(self, channel: ChannelSettings, end: int, first: int, limit: int) -> _Stored:
        """The newest ``limit`` stored messages with ``first <= seq <= end``, oldest first, in few round trips.

        A window of sequences just below ``end`` is fetched with one batch; deleted sequences make it
        come up short, so the next window is widened by the density seen so far, and a window with no
        message at all is jumped over by asking for the newest message before it.
        """
        chunks: builtins.list[_Stored] = []
        found = scanned = hits = 0
        while found < limit and end >= first:
            need = limit - found
            start = max(first, end - _span(need, scanned, hits) + 1)
            window, _ = await self._batch(channel, start, end - start + 1)
            window = [m for m in window if m.seq <= end]
            scanned, hits = scanned + end - start + 1, hits + len(window)
            if not window:
                if start <= first:
                    break
                previous = await self._last_before(channel, start)
                if previous is None:
                    break
                window = [previous]
            window = window[-need:]
            chunks.append(window)
            found += len(window)
            end = window[0].seq - 1
        return [m for chunk in reversed(chunks) for m in chunk]

    async def _batch(self, channel: ChannelSettings, seq: int, count: int) -> tuple[_Stored, int]:
        try:
            with self._bus():
                got = await get_batch(
                    self._client(),
                    self._layout.channel_stream(channel.name),
                    seq,
                    count,
                    prefix=self._api,
                    timeout=REQUEST_TIMEOUT_S,
                )
        except DirectGetUnavailable:
            self._ready.discard(channel.name)  # the stream is gone: recreated on next use, reads as empty
            return [], 0
        return got.messages, got.pending

    async def _last_before(self, channel: ChannelSettings, seq: int) -> StoredMsg | None:
        try:
            with self._bus():
                return await last_at_or_before(
                    self._client(),
                    self._layout.channel_stream(channel.name),
                    self._layout.channel_subject(channel.name),
                    seq - 1,
                    prefix=self._api,
                    timeout=REQUEST_TIMEOUT_S,
                )
        except DirectGetUnavailable:
            return None

    def _cursor(self, filters: dict[str, Any], position: dict[str, int]) -> str:
        return make_cursor(READ_TOOL, self._layout.namespace, filters, position)

    # -- status --------------------------------------------------------------------------------

    async def status(self, channel: str | None = None) -> builtins.list[ChannelStatus]:
        """Counters per channel (one, or all configured that the call may read: see :mod:`~nats_mcp.coord.capscope`);
        a channel whose stream does not exist yet reads as zeros."""
        if channel is not None:
            chans = [self._channel(channel)]
        else:
            chans = [c for c in self._channels.values() if capscope.channel_visible(c.name)]
        return list(await asyncio.gather(*(self._status(c) for c in chans)))

    async def _status(self, channel: ChannelSettings) -> ChannelStatus:
        try:
            with nats_edge(), self._bus():
                info = await self._conn.jetstream.stream_info(self._layout.channel_stream(channel.name))
        except ResourceNotFound:
            return ChannelStatus(name=channel.name, messages=0, bytes=0, firstSequence=0, lastSequence=0)
        s = info.state
        return ChannelStatus(
            name=channel.name, messages=s.messages, bytes=s.bytes, firstSequence=s.first_seq, lastSequence=s.last_seq
        )

    # -- helpers -------------------------------------------------------------------------------

    def _channel(self, name: str) -> ChannelSettings:
        chan = self._channels.get(_name(name, "channel"))
        if chan is None:
            known = ", ".join(self._channels) or "(none)"
            raise NotFound(f"channel {name!r} is not configured; configured channels: {known}")
        return chan

    def _client(self) -> Client:
        return self._conn.client

    @contextmanager
    def _bus(self) -> Iterator[None]:
        """NATS going away mid-call is ``nats_unavailable`` (retryable), like NATS being away before it."""
        try:
            with nats_edge():
                yield
        except (NatsTimeout, ConnectionLost) as exc:
            if isinstance(exc, ConnectionLost) and origin(exc) not in _LOST:
                raise
            raise self._conn.unavailable() from exc
        except JetStreamUnavailable as exc:
            raise NatsUnavailableError(
                "JetStream is not answering; the call can be retried.",
                "check that JetStream is enabled on the NATS server; in a cluster, wait for a leader to be elected",
            ) from exc
        except JetStreamError as exc:
            known = translate(exc.__cause__) if exc.__cause__ is not None else None
            if known is None:
                raise
            raise known from exc


def _name(value: object, what: str) -> str:
    try:
        return validate_name(value, what)
    except InvalidNameError as exc:
        raise InvalidName(str(exc)) from None


def _scope(scope: object) -> Scope | None:
    if scope is None or scope in _SCOPES:
        return cast(Scope | None, scope)
    raise InvalidArgument(f"scope must be one of {', '.join(_SCOPES)}")


def _check_limit(limit: object) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be an integer from 1 to {MAX_LIMIT}")


def _check_after(after: object) -> int:
    if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < MAX_SEQUENCE:
        raise InvalidArgument("afterSequence must be an integer >= 0 (a sequence from an earlier read)")
    return after


def _span(need: int, scanned: int, hits: int) -> int:
    """How many sequences to fetch for ``need`` messages, given how dense the history was so far."""
    if hits == 0 or scanned <= hits:
        return need
    return min(math.ceil(need * scanned / hits), need * WINDOW_GROWTH_CAP)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _decode_all(stored: list[StoredMsg]) -> list[ChannelMessage]:
    return [m for m in map(_decode, stored) if m is not None]


def _decode(stored: StoredMsg) -> ChannelMessage | None:
    """A stored message, or None if it is not ours (someone published raw data on the subject).

    Only the fields we know are read: a newer writer may add some without hiding its messages from us. The body is
    validated once, from its JSON, by a model of the stored fields; the message is then put together from what that
    model holds without validating it again (half the CPU of a channel page's decoding)."""
    try:
        body: BaseModel = _STORED.model_validate_json(stored.data)
    except (ValueError, RecursionError):  # ValidationError included
        log.warning("skipping unreadable message %d on %s", stored.seq, stored.subject)
        return None
    fields = body.model_fields_set | {"sequence"}
    return ChannelMessage.model_construct(fields, sequence=stored.seq, **body.__dict__)
