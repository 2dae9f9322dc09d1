"""The direct-message boundary: each agent's inbox, written by any visible sender and read exactly once by its owner.

Storage: one stream per namespace, one subject per recipient (``Layout.inbox_subject``). A DM is
stored whether or not its recipient is online; a full inbox refuses new mail (``limit_exceeded``)
instead of evicting older mail.

Reading never uses a consumer (Warp's durable inbox consumer raced the reader and ate every DM, M1).
A read walks the owner's subject with batched direct gets (:func:`nats_mcp.bus.directget.get_batch`)
from a start sequence and claims each message it returns by deleting it: a delete of one sequence
succeeds for exactly one caller (:func:`nats_mcp.bus.streamops.delete_msg`), so two concurrent
readers never return the same message. Messages that do not match the filters are only looked at,
never deleted (M2), and the cursor is a real position (M3). A read itself never waits: an empty inbox
answers at once (a tool's ``waitMs`` repeats the read when mail arrives: :mod:`nats_mcp.coord.waits`).

With ``nats.isolate_inbox`` (an agent whose NATS user may touch only its own inbox: the stream-wide direct-get
and delete APIs name the stream, not the subject, so they cannot be scoped) the owner reads through its own
durable consumer ``inbox_<guid>``, created through the subject-filtered create API whose subject the server
checks against the filter. A read pulls, acknowledges each message it returns (one acknowledgement, confirmed
by the server, consumes it: concurrent readers never get the same one) and offers the rest back (``-NAK``) when
it ends. Consumed mail then stays stored until ``limits.inbox_max_age`` (the agent may not delete), and counts
towards the inbox's cap until then; the cursor only says that more is waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nats_mcp.bus import specs
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import Batch, DirectGetUnavailable, StoredMsg, api_prefix, get_batch
from nats_mcp.bus.errors import (
    JetStreamError,
    NatsTimeout,
    NoStreamResponse,
    PayloadTooLargeError,
    ResourceNotFound,
    nats_edge,
    raise_api_error,
)
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.publish import store
from nats_mcp.bus.pull import Delivery, ack, pull
from nats_mcp.bus.setup import ensure_stream
from nats_mcp.bus.specs import StreamConfig
from nats_mcp.bus.streamops import delete_msgs, get_next
from nats_mcp.config.section import duration_seconds
from nats_mcp.config.settings import Settings
from nats_mcp.coord.checks import check_metadata, dumps, timestamp
from nats_mcp.coord.context import Caller
from nats_mcp.coord.dms import (
    Filters,
    check_content,
    check_limit,
    check_message_id,
    check_message_type,
    parse_stored,
)
from nats_mcp.coord.errors import LimitExceeded, nats_errors
from nats_mcp.coord.models import AgentRecord, DirectMessage
from nats_mcp.coord.pagination import int_position, make_cursor, read_cursor
from nats_mcp.core import reqctx

log = logging.getLogger("nats_mcp.coord.inbox")

READ_TOOL = "warp_messages_read_direct"
"""Cursors of :meth:`InboxService.read` are bound to this tool name."""
FILTERED_BATCH = 100
"""Messages fetched per direct-get request while a filtered read skips non-matching mail."""
BATCH_MAX_BYTES = 2 * 1024 * 1024
"""Upper bound of one direct-get batch (the server always sends at least one message)."""
MAX_EMPTY_RETRIES = 3
"""How often a batch whose first message was lost in transit is asked for again before the read stops."""
API_TIMEOUT_S = 5.0
ISOLATED_ACK_WAIT_S = 30.0
"""How long a message an isolated read holds stays away from other reads (a crashed reader's come back after it)."""
_STREAM_NOT_FOUND = 10059

# The publish error of a full inbox (discard new per subject).
_ERR_PER_SUBJECT_FULL = "maximum messages per subject exceeded"


@dataclass(frozen=True)
class InboxPage:
    """One read: the consumed messages (oldest first) and whether matching mail is left."""

    messages: list[DirectMessage]
    next_cursor: str | None
    has_more: bool


# -- the service ---------------------------------------------------------------------------------


class InboxService:
    """Send DMs into any namespace's inbox stream; read (and consume) the caller's own inbox."""

    def __init__(self, conn: NatsConnection, settings: Settings) -> None:
        self._conn = conn
        self._limits = settings.limits
        self._api = api_prefix(settings.nats.jetstream_domain)
        self._ready: set[str] = set()
        """Inbox streams this process has created or brought to the configured limits."""
        self.isolated = settings.nats.isolate_inbox
        self._consumers: set[str] = set()
        """``<stream>.<consumer>`` of the isolated inbox consumers this process has created."""

    # -- send ------------------------------------------------------------------------------------

    async def send(
        self,
        caller: Caller,
        sender_handle: str,
        recipient: AgentRecord,
        *,
        message_type: str = "text",
        content: str,
        metadata: dict[str, Any] | None = None,
        thread_id: str | None = None,
        in_reply_to: str | None = None,
    ) -> DirectMessage:
        """Store a DM in the recipient's inbox (in the recipient's namespace), online or not.

        Without ``thread_id`` the message starts a thread named by its own id. ``in_reply_to`` is checked for its
        form only: the message it names was consumed from its reader's inbox and is stored nowhere to look at.
        """
        limits = self._limits
        thread = check_message_id(thread_id, "threadId") if thread_id is not None else None
        reply_to = check_message_id(in_reply_to, "inReplyTo") if in_reply_to is not None else None
        message_id = reqctx.new_uuid()
        message = DirectMessage(
            id=message_id,
            senderGuid=caller.guid,
            senderHandle=sender_handle,
            messageType=check_message_type(message_type),
            content=check_content(content, limits.message_bytes),
            metadata=check_metadata(metadata, limits.metadata_bytes, limits.metadata_depth),
            timestamp=timestamp(),
            threadId=thread or message_id,
            inReplyTo=reply_to,
        )
        layout = Layout(recipient.namespace)
        subject = layout.inbox_subject(recipient.guid)
        payload = dumps({**message.model_dump(), "recipientGuid": recipient.guid})
        with nats_errors():
            await self._publish(layout, subject, payload, message.id, recipient)
        return message

    async def _publish(self, layout: Layout, subject: str, payload: bytes, msg_id: str, recipient: AgentRecord) -> None:
        if layout.inbox_stream not in self._ready:
            await self._ensure_inbox(layout)
        try:
            with nats_edge():
                try:
                    with nats_edge():
                        await self._publish_once(layout, subject, payload, msg_id)
                except NoStreamResponse:
                    # Deleted behind our back (or a fresh server): create it again and retry once.
                    await self._ensure_inbox(layout)
                    await self._publish_once(layout, subject, payload, msg_id)
                except NatsTimeout:
                    # Same Nats-Msg-Id: if the first attempt was stored after all, the stream drops the copy.
                    await self._publish_once(layout, subject, payload, msg_id)
        except JetStreamError as exc:
            if _ERR_PER_SUBJECT_FULL in (exc.description or ""):
                raise LimitExceeded(
                    f"the inbox of {recipient.handle} is full ({self._limits.inbox_max_messages} unread messages): "
                    "the message was not stored; try again after the recipient has read its inbox"
                ) from None
            raise
        except PayloadTooLargeError:
            raise LimitExceeded("the message and its metadata are larger than the NATS server accepts") from None

    async def _publish_once(self, layout: Layout, subject: str, payload: bytes, msg_id: str) -> None:
        await store(
            self._conn.jetstream, subject, payload, stream=layout.inbox_stream, msg_id=msg_id, timeout=API_TIMEOUT_S
        )

    async def ensure(self, layout: Layout) -> None:
        """Create (or bring to the limits) the inbox stream of ``layout``'s namespace (``nats-mcp provision``)."""
        await self._ensure_inbox(layout)

    async def _ensure_inbox(self, layout: Layout) -> None:
        await ensure_stream(self._conn.jetstream, self.inbox_config(layout), replicas=self._conn.replicas)
        self._ready.add(layout.inbox_stream)

    def inbox_config(self, layout: Layout) -> StreamConfig:
        """The inbox stream of a namespace: per-recipient cap that refuses new mail rather than dropping old."""
        max_age = duration_seconds(self._limits.inbox_max_age)
        return specs.inbox_stream(layout, max_messages=self._limits.inbox_max_messages, max_age_s=max_age)

    # -- read ------------------------------------------------------------------------------------

    async def read(
        self,
        caller: Caller,
        *,
        limit: int = 10,
        cursor: str | None = None,
        message_type: str | None = None,
        sender_guid: str | None = None,
        thread_id: str | None = None,
    ) -> InboxPage:
        """Consume up to ``limit`` matching messages of the caller's own inbox, oldest first."""
        check_limit(limit)
        filters = Filters.of(message_type, sender_guid, thread_id)
        binding = filters.binding(caller.guid)
        after = 0
        if cursor is not None:
            after = int_position(read_cursor(cursor, READ_TOOL, caller.namespace, binding), "after")
        if self.isolated:
            with nats_errors():
                messages, more = await self._read_isolated(Layout(caller.namespace), caller.guid, filters, limit)
            cursor_out = make_cursor(READ_TOOL, caller.namespace, binding, {"after": 0}) if more else None
            return InboxPage(messages=messages, next_cursor=cursor_out, has_more=more)
        scan = _Read(self, Layout(caller.namespace), caller.guid, filters, limit, after)
        with nats_errors():
            await scan.run()
        more_at = scan.more_at
        return InboxPage(
            messages=scan.messages(),
            next_cursor=None
            if more_at is None
            else make_cursor(READ_TOOL, caller.namespace, binding, {"after": more_at - 1}),
            has_more=more_at is not None or scan.interrupted,
        )

    # -- peek ------------------------------------------------------------------------------------

    async def peek(self, caller: Caller, *, limit: int = 20) -> tuple[int, list[DirectMessage]]:
        """How many messages wait in the caller's own inbox, and the oldest ``limit`` of them; consumes nothing.

        The same batched direct gets as :meth:`read`, without the claim: nothing is deleted, not even a
        payload that is not a DM to the owner (it is skipped and not counted). The count is exact for the
        part walked and comes from the batch's pending count for the rest (one round trip in the usual
        case); when a batch stops short and the rest cannot be told from it, the stream is asked.
        """
        check_limit(limit)
        layout = Layout(caller.namespace)
        if self.isolated:
            with nats_errors():
                return await self._peek_isolated(layout, caller.guid, limit)
        stream, subject = layout.inbox_stream, layout.inbox_subject(caller.guid)
        found: list[DirectMessage] = []
        walked = junk = position = lost_first = 0
        with nats_errors():
            while True:
                batch = await self.fetch(stream, subject, position, max(limit - len(found), 1))
                if not batch.messages and not batch.complete and lost_first < MAX_EMPTY_RETRIES:
                    lost_first += 1  # its first message was lost in transit: ask again, a bounded number of times
                    continue
                for stored in batch.messages:
                    message = parse_stored(stored.data, caller.guid)
                    if message is None:
                        junk += 1
                    elif len(found) < limit:
                        found.append(message)
                walked += len(batch.messages)
                if batch.messages:
                    position = batch.messages[-1].seq
                if batch.at_end:
                    return walked - junk, found
                if batch.complete and len(found) >= limit:
                    return walked - junk + batch.pending, found
                if not batch.messages or len(found) >= limit:
                    return max(await self._count(stream, subject) - junk, len(found)), found

    async def _count(self, stream: str, subject: str) -> int:
        """Messages stored on ``subject`` (0 when the stream does not exist yet)."""
        try:
            with nats_edge():
                info = await self._conn.jetstream.stream_info(stream, subjects_filter=subject)
        except ResourceNotFound:
            return 0
        return int((info.state.subjects or {}).get(subject, 0))

    # -- isolated reads: through the owner's own consumer -----------------------------------------

    async def _own_consumer(self, layout: Layout, owner: str) -> str | None:
        """The owner's durable inbox consumer, created (idempotently) through ``CONSUMER.CREATE.<stream>.<name>.
        <filter>``: the server refuses a body whose filter is not the one in the subject, which is what lets NATS
        permissions scope an agent to its own inbox. None when the inbox stream does not exist yet."""
        stream, name, subject = layout.inbox_stream, f"inbox_{owner}", layout.inbox_subject(owner)
        if f"{stream}.{name}" in self._consumers:
            return name
        config = {
            "durable_name": name,
            "name": name,
            "filter_subject": subject,
            "ack_policy": "explicit",
            "ack_wait": int(ISOLATED_ACK_WAIT_S * 1e9),
            "deliver_policy": "all",
            "replay_policy": "instant",
            "max_ack_pending": self._limits.inbox_max_messages,
        }
        body = json.dumps({"stream_name": stream, "config": config}).encode()
        reply = await self._conn.client.request(
            f"{self._api}.CONSUMER.CREATE.{stream}.{name}.{subject}", body, timeout=API_TIMEOUT_S
        )
        answer = json.loads(reply.data or b"{}")
        error = answer.get("error") if isinstance(answer, dict) else None
        if isinstance(error, dict):
            if error.get("err_code") == _STREAM_NOT_FOUND:
                return None
            raise_api_error(error)
        self._consumers.add(f"{stream}.{name}")
        return name

    async def _pull(self, stream: str, name: str, batch: int) -> list[Delivery]:
        return await pull(self._conn.client, stream, name, batch, prefix=self._api, timeout=API_TIMEOUT_S)

    async def _offer_back(self, held: Sequence[Delivery]) -> None:
        """Deliveries this read took but does not return: offered again at once (a lost ``-NAK`` only delays them
        until the ack wait ends)."""
        outcomes = await asyncio.gather(
            *(ack(self._conn.client, d.reply, "-NAK", timeout=API_TIMEOUT_S) for d in held), return_exceptions=True
        )
        if any(isinstance(o, BaseException) for o in outcomes):
            log.warning(
                "inbox: %d message(s) could not be offered back; they return after the ack wait",
                sum(isinstance(o, BaseException) for o in outcomes),
            )

    async def _read_isolated(
        self, layout: Layout, owner: str, filters: Filters, limit: int
    ) -> tuple[list[DirectMessage], bool]:
        """Consume up to ``limit`` matching messages through the owner's consumer: (oldest first, more waiting)."""
        name = await self._own_consumer(layout, owner)
        if name is None:
            return [], False
        stream, nc = layout.inbox_stream, self._conn.client
        won: list[tuple[int, DirectMessage]] = []
        held: list[Delivery] = []
        more = False
        try:
            while not more:
                size = FILTERED_BATCH if filters.active else limit - len(won) + 1  # one extra: is more waiting?
                batch = await self._pull(stream, name, size)
                taken: list[tuple[Delivery, DirectMessage | None]] = []
                for delivery in batch:
                    message = parse_stored(delivery.data, owner)
                    if message is not None and not filters.matches(message):
                        held.append(delivery)
                    elif message is not None and len(won) + sum(m is not None for _, m in taken) >= limit:
                        held.append(delivery)
                        more = True
                    else:
                        taken.append((delivery, message))  # a match to return, or junk to acknowledge away
                acks = await asyncio.gather(
                    *(ack(nc, d.reply, "+ACK", timeout=API_TIMEOUT_S) for d, _ in taken), return_exceptions=True
                )
                for (delivery, message), outcome in zip(taken, acks, strict=True):
                    if isinstance(outcome, BaseException):
                        held.append(delivery)  # not known to be consumed: offered again rather than lost
                    elif message is not None:
                        won.append((delivery.stream_seq, message))
                failed = next((o for o in acks if isinstance(o, BaseException)), None)
                if failed is not None and not won:
                    raise failed
                if failed is not None or len(batch) < size:
                    break
        finally:
            if held:
                await self._offer_back(held)
        return [m for _, m in sorted(won, key=lambda item: item[0])], more

    async def _peek_isolated(self, layout: Layout, owner: str, limit: int) -> tuple[int, list[DirectMessage]]:
        """The waiting count (the consumer's pending and held messages) and the oldest ``limit`` messages, taken
        and offered straight back: a read running at that moment does not see them."""
        name = await self._own_consumer(layout, owner)
        if name is None:
            return 0, []
        stream = layout.inbox_stream
        batch = await self._pull(stream, name, limit)
        try:
            reply = await self._conn.client.request(
                f"{self._api}.CONSUMER.INFO.{stream}.{name}", b"", timeout=API_TIMEOUT_S
            )
            info = json.loads(reply.data or b"{}")
        finally:
            if batch:
                await self._offer_back(batch)
        count = int(info.get("num_pending", 0)) + int(info.get("num_ack_pending", 0))
        found = [m for m in (parse_stored(d.data, owner) for d in batch) if m is not None]
        return max(count, len(found)), found

    # -- NATS primitives of a read ---------------------------------------------------------------

    async def fetch(self, stream: str, subject: str, after: int, count: int) -> Batch:
        """Up to ``count`` messages stored on ``subject`` after sequence ``after``: one batched direct get that
        stops at a message lost in transit rather than skip past it, or (a stream without direct gets) one
        message through the stream API. A missing stream reads as empty."""
        nc, api = self._conn.client, self._api
        try:
            return await get_batch(
                nc,
                stream,
                after + 1,
                count,
                subject=subject,
                max_bytes=BATCH_MAX_BYTES,
                partial=True,
                prefix=api,
                timeout=API_TIMEOUT_S,
            )
        except DirectGetUnavailable:
            found = await get_next(nc, stream, after + 1, subject, prefix=api, timeout=API_TIMEOUT_S)
            return Batch([found], 0, complete=False) if found else Batch([], 0)

    async def claim_all(self, stream: str, seqs: Sequence[int]) -> list[bool | BaseException]:
        """Claim messages by deleting them: True only for the one caller whose delete removed a message, False
        if another got there first; an error is returned, not raised. Consumed mail is unreachable at once."""
        return await delete_msgs(self._conn.client, stream, seqs, prefix=self._api, timeout=API_TIMEOUT_S)


@dataclass
class _Read:
    """One read call: walks the owner's subject forward, claiming matches until ``limit`` are won."""

    service: InboxService
    layout: Layout
    owner: str
    filters: Filters
    limit: int
    position: int
    """Every message at or below this sequence has been claimed, skipped as non-matching, or is gone."""
    claimed: list[tuple[int, DirectMessage]] = field(default_factory=list)
    more_at: int | None = None
    """Sequence of the first matching message left for the next call (None: none found)."""
    interrupted: bool = False

    async def run(self) -> None:
        subject = self.layout.inbox_subject(self.owner)
        lost_first = 0
        try:
            while self.more_at is None:
                batch = await self.service.fetch(self.layout.inbox_stream, subject, self.position, self._batch_size())
                if not batch.messages and not batch.complete and lost_first < MAX_EMPTY_RETRIES:
                    lost_first += 1  # its first message was lost in transit: ask again, a bounded number of times
                    continue
                await self._take(batch.messages)
                if batch.at_end or not batch.messages:
                    return
        except Exception:
            if not self.claimed:
                raise
            # Claimed messages exist nowhere else any more: hand them over rather than lose them.
            log.warning(
                "inbox read of %s stopped early; returning the %d claimed", self.owner, len(self.claimed), exc_info=True
            )
            self.interrupted = True

    def _batch_size(self) -> int:
        if self.filters.active:
            return FILTERED_BATCH
        return self.limit - len(self.claimed) + 1  # the extra one tells whether more is waiting

    async def _take(self, items: list[StoredMsg]) -> None:
        wanted: deque[tuple[int, DirectMessage]] = deque()
        junk: list[int] = []
        for stored in items:
            message = parse_stored(stored.data, self.owner)
            if message is None:
                junk.append(stored.seq)
            elif self.filters.matches(message):
                wanted.append((stored.seq, message))
        await self._drop(junk)
        while wanted:
            need = self.limit - len(self.claimed)
            if need == 0:
                self.more_at = wanted[0][0]
                return
            group = [wanted.popleft() for _ in range(min(need, len(wanted)))]
            await self._claim(group)
        if items:
            self.position = items[-1].seq

    async def _claim(self, group: list[tuple[int, DirectMessage]]) -> None:
        outcomes = await self.service.claim_all(self.layout.inbox_stream, [seq for seq, _ in group])
        self.claimed.extend(item for item, won in zip(group, outcomes, strict=True) if won is True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _drop(self, seqs: list[int]) -> None:
        """Payloads that are not DMs to this owner (written around this server) are removed, not returned."""
        if seqs:
            log.warning("dropping %d malformed message(s) from the inbox of %s", len(seqs), self.owner)
            await self.service.claim_all(self.layout.inbox_stream, seqs)

    def messages(self) -> list[DirectMessage]:
        return [message for _, message in sorted(self.claimed, key=lambda item: item[0])]
