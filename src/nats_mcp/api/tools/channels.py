"""The channel tools: shared message history, posted to and read by every agent of a namespace (warp_channels_*)."""

from __future__ import annotations

from pydantic import Field

from nats_mcp.api.schema import ChannelName
from nats_mcp.api.tools.base import Args, NoArgs, Out, Rendered, ToolSpec, more_hint
from nats_mcp.coord.channels import ChannelPage
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import InvalidArgument
from nats_mcp.coord.models import ChannelInfo, ChannelMessage, ChannelStatus, Scope
from nats_mcp.coord.service import Coordinator
from nats_mcp.coord.waits import MAX_WAIT_MS
from nats_mcp.security.needs import ChannelRead, ChannelSend, Waits

_CURSOR = "nextCursor of the previous page, to continue (same filters)."


# ---- inputs -------------------------------------------------------------------------------------


class ChannelsSendArgs(Args):
    channel: ChannelName = Field(description="A configured channel (see warp_channels_list).")
    message: str = Field(description="The message (Markdown). At most 64 KiB by default.")
    scope: Scope | None = Field(default=None, description="Stored with the message for readers' information.")


class ChannelsReadArgs(Args):
    channel: ChannelName = Field(description="A configured channel.")
    limit: int = Field(default=50, ge=1, le=1000, description="Messages per page.")
    cursor: str | None = Field(default=None, description=_CURSOR)
    afterSequence: int | None = Field(
        default=None, ge=0, description="Poll: only messages after this sequence, oldest first."
    )
    waitMs: int = Field(
        default=0,
        ge=0,
        le=MAX_WAIT_MS,
        description="With afterSequence: if nothing is new yet, wait up to this many ms for a message (0: at once).",
    )


class ChannelsStatusArgs(Args):
    channel: ChannelName | None = Field(default=None, description="One channel; all when omitted.")


# ---- outputs ------------------------------------------------------------------------------------


class ChannelsListOut(Out):
    channels: list[ChannelInfo]


class ChannelsSendOut(Out):
    channel: str
    id: str
    sequence: int
    handle: str
    senderGuid: str
    timestamp: str


class ChannelsReadOut(Out):
    channel: str
    messages: list[ChannelMessage]
    nextCursor: str | None
    hasMore: bool
    total: int | None


class ChannelsStatusOut(Out):
    channels: list[ChannelStatus]


# ---- handlers -----------------------------------------------------------------------------------


async def channels_list(c: Coordinator, _caller: Caller, _a: NoArgs) -> Rendered:
    channels = c.channels.list()
    lines = [f"- **{ch.name}**: {ch.description}" for ch in channels]
    return ChannelsListOut(channels=channels), "Channels:\n" + "\n".join(lines)


async def channels_send(c: Coordinator, caller: Caller, a: ChannelsSendArgs) -> Rendered:
    handle = await c.require_handle(caller)
    m = await c.channels.send(caller, handle, a.channel, a.message, a.scope)
    out = ChannelsSendOut(
        channel=a.channel, id=m.id, sequence=m.sequence, handle=m.handle, senderGuid=m.senderGuid, timestamp=m.timestamp
    )
    return out, f"Sent to #{a.channel} as **{m.handle}** (sequence {m.sequence})."


async def channels_read(c: Coordinator, caller: Caller, a: ChannelsReadArgs) -> Rendered:
    if a.waitMs and a.afterSequence is None:
        raise InvalidArgument("waitMs needs afterSequence: a wait is for messages after a point you have read up to")

    async def read() -> ChannelPage:
        return await c.channels.read(caller, a.channel, limit=a.limit, cursor=a.cursor, after_sequence=a.afterSequence)

    same = (a.afterSequence, a.cursor, a.limit)  # waits reading the same page share one read in flight
    page = await c.waits.channel(a.channel, read, lambda p: bool(p.messages), a.waitMs, key=same)
    out = ChannelsReadOut(
        channel=a.channel, messages=page.messages, nextCursor=page.next_cursor, hasMore=page.has_more, total=page.total
    )
    if not page.messages:
        return out, f"No messages in #{a.channel}" + (" after that point." if a.afterSequence is not None else ".")
    lines = [f"[{m.sequence}] {m.timestamp} **{m.handle}**: {m.message}" for m in page.messages]
    total = f" of {page.total}" if page.total is not None else ""
    more = more_hint(page.next_cursor)
    if a.afterSequence is not None:  # a forward cursor goes with the same afterSequence
        more = (
            more.replace("`cursor:", f"`afterSequence: {a.afterSequence}, cursor:")
            if more
            else (f"\n\nUp to date: poll again with `afterSequence: {page.messages[-1].sequence}`.")
        )
    return out, f"#{a.channel} ({len(page.messages)}{total} messages):\n" + "\n".join(lines) + more


async def channels_status(c: Coordinator, _caller: Caller, a: ChannelsStatusArgs) -> Rendered:
    statuses = await c.channels.status(a.channel)
    lines = [
        f"- **{s.name}**: {s.messages} messages, {s.bytes} bytes, sequences {s.firstSequence}..{s.lastSequence}"
        for s in statuses
    ]
    return ChannelsStatusOut(channels=statuses), "\n".join(lines) or "No channels."


# ---- the table ----------------------------------------------------------------------------------


CHANNEL_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "channels_list",
        "List channels",
        "The project's channels (shared message history) with their limits. Use it to find where to post.",
        NoArgs,
        ChannelsListOut,
        channels_list,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        "channels_send",
        "Post to channel",
        "Post a message to a channel (needs a handle). Everyone in the namespace can read it; history is kept.",
        ChannelsSendArgs,
        ChannelsSendOut,
        channels_send,
        needs=(ChannelSend("channel"),),
    ),
    ToolSpec(
        "channels_read",
        "Read channel",
        "Read a channel without consuming it: newest page first (each page "
        "oldest to newest, continue with nextCursor), or pass afterSequence to poll for what is new (with waitMs "
        "to wait for it instead of polling). Handles are not unique: identify a sender by senderGuid, set by the "
        "server from the sender's identity.",
        ChannelsReadArgs,
        ChannelsReadOut,
        channels_read,
        read_only=True,
        idempotent=True,
        needs=(ChannelRead("channel"), Waits("waitMs", 0, pool="read_waits")),
    ),
    ToolSpec(
        "channels_status",
        "Channel status",
        "Message counts, bytes and sequence range of one or all channels.",
        ChannelsStatusArgs,
        ChannelsStatusOut,
        channels_status,
        read_only=True,
        idempotent=True,
        needs=(ChannelRead("channel"),),
    ),
)
