"""The direct-message tools: one agent's inbox, written by agents that can see it (warp_messages_*)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from nats_mcp.api.schema import GuidStr, TypeStr, UuidStr
from nats_mcp.api.tools.base import Args, Out, Rendered, ToolSpec, more_hint
from nats_mcp.coord.context import Caller
from nats_mcp.coord.inbox import InboxPage
from nats_mcp.coord.models import DirectMessage, Status
from nats_mcp.coord.service import Coordinator
from nats_mcp.coord.waits import MAX_WAIT_MS
from nats_mcp.security.needs import Waits

_CURSOR = "nextCursor of the previous page, to continue (same filters)."


# ---- inputs -------------------------------------------------------------------------------------


class SendDirectArgs(Args):
    recipientGuid: GuidStr = Field(description="The recipient's GUID.")
    message: str = Field(description="The message. At most 64 KiB by default.")
    messageType: TypeStr = Field(default="text", description="e.g. text, work-offer, help-request.")
    metadata: dict[str, Any] | None = Field(default=None, description="Any JSON object (at most 16 KiB).")
    threadId: UuidStr | None = Field(
        default=None, description="The conversation to continue (threadId of a message you got); a new one if omitted."
    )
    inReplyTo: UuidStr | None = Field(default=None, description="The id of the message this one answers.")


class ReadDirectArgs(Args):
    limit: int = Field(default=10, ge=1, le=100, description="At most this many messages (each is consumed).")
    cursor: str | None = Field(default=None, description=_CURSOR)
    messageType: TypeStr | None = Field(default=None, description="Only messages of this type.")
    senderGuid: GuidStr | None = Field(default=None, description="Only messages from this agent.")
    threadId: UuidStr | None = Field(default=None, description="Only messages of this conversation.")
    waitMs: int = Field(
        default=0,
        ge=0,
        le=MAX_WAIT_MS,
        description="If nothing matches yet, wait up to this many ms for a matching message (0: answer at once).",
    )


# ---- outputs ------------------------------------------------------------------------------------


class SendDirectOut(Out):
    id: str
    recipientGuid: str
    recipientHandle: str
    recipientStatus: Status
    threadId: str


class ReadDirectOut(Out):
    messages: list[DirectMessage]
    hasMore: bool
    nextCursor: str | None


# ---- handlers -----------------------------------------------------------------------------------


async def messages_send_direct(c: Coordinator, caller: Caller, a: SendDirectArgs) -> Rendered:
    handle = await c.require_registered_handle(caller)
    recipient = await c.registry.find_visible(caller, a.recipientGuid)
    msg = await c.inbox.send(
        caller,
        handle,
        recipient,
        message_type=a.messageType,
        content=a.message,
        metadata=a.metadata,
        thread_id=a.threadId,
        in_reply_to=a.inReplyTo,
    )
    status = c.registry.effective_status(recipient)
    thread = msg.threadId or msg.id
    out = SendDirectOut(
        id=msg.id,
        recipientGuid=recipient.guid,
        recipientHandle=recipient.handle,
        recipientStatus=status,
        threadId=thread,
    )
    note = "" if status == "online" else f" The recipient is {status}; it will read the message when it checks."
    return out, f"Message `{msg.id}` (thread `{thread}`) delivered to **{recipient.handle}**'s inbox.{note}"


async def messages_read_direct(c: Coordinator, caller: Caller, a: ReadDirectArgs) -> Rendered:
    async def read() -> InboxPage:
        return await c.inbox.read(
            caller,
            limit=a.limit,
            cursor=a.cursor,
            message_type=a.messageType,
            sender_guid=a.senderGuid,
            thread_id=a.threadId,
        )

    page = await c.waits.inbox(caller, read, lambda p: bool(p.messages), a.waitMs)
    out = ReadDirectOut(messages=page.messages, hasMore=page.has_more, nextCursor=page.next_cursor)
    if not page.messages:
        return out, "No direct messages." + (f" None arrived within {a.waitMs} ms." if a.waitMs else "")
    blocks = [
        f"---\n**From:** {m.senderHandle} (`{m.senderGuid}`) · {m.messageType} · {m.timestamp} · id `{m.id}`"
        + (f" · thread `{m.threadId}`" if m.threadId else "")
        + (f" · in reply to `{m.inReplyTo}`" if m.inReplyTo else "")
        + f"\n\n{m.content}"
        for m in page.messages
    ]
    return out, f"{len(page.messages)} direct message(s) (now consumed):\n" + "\n".join(blocks) + more_hint(
        page.next_cursor
    )


# ---- the table ----------------------------------------------------------------------------------


DIRECT_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "messages_send_direct",
        "Send direct message",
        "Send a direct message to an agent you can see, by "
        "GUID (needs registration). It waits in the recipient's inbox even while it is offline. Returns the threadId "
        "it used: pass it (and inReplyTo) when answering, to keep a conversation together.",
        SendDirectArgs,
        SendDirectOut,
        messages_send_direct,
    ),
    ToolSpec(
        "messages_read_direct",
        "Read direct messages",
        "Read your direct messages, oldest first. Returned "
        "messages are consumed (read once); messages that do not match the filters stay. Handles are not unique: "
        "identify a sender by senderGuid, set by the server from the sender's identity. To await an answer, pass "
        "threadId and waitMs instead of calling again in a loop.",
        ReadDirectArgs,
        ReadDirectOut,
        messages_read_direct,
        destructive=True,
        needs=(Waits("waitMs", 0, pool="read_waits"),),
    ),
)
