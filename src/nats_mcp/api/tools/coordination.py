"""The tool contract boundary: names, descriptions, input/output schemas, annotations, and how results read.

Each tool is an input model (validated here: ``invalid_argument``), a handler that calls the domain
facade, an output model (the ``outputSchema``; results are validated against it before they leave),
and a Markdown rendering for the text block. Names and argument names follow Warp's, so existing
agent prompts keep working; the prefix (default ``warp_``) comes from settings.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from nats_mcp.api.schema import GuidStr, NameStr, ProjectIdStr, TypeStr
from nats_mcp.api.tools.base import Args, NoArgs, Out, Rendered, ToolSpec, more_hint
from nats_mcp.api.tools.work import WORK_TOOLS
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import InvalidArgument
from nats_mcp.coord.models import (
    LEGACY_VISIBILITY,
    AgentEntry,
    ChannelInfo,
    ChannelMessage,
    ChannelStatus,
    DirectMessage,
    Scope,
    Status,
)
from nats_mcp.coord.service import Coordinator, handle_from_agent_type

# ---- inputs -------------------------------------------------------------------------------------

_CURSOR = "nextCursor of the previous page, to continue (same filters)."


class HandleSetArgs(Args):
    handle: NameStr = Field(description="The name other agents see on your messages: a-z, 0-9 and '-'.")


class ChannelsSendArgs(Args):
    channel: NameStr = Field(description="A configured channel (see warp_channels_list).")
    message: str = Field(description="The message (Markdown). At most 64 KiB by default.")
    scope: Scope | None = Field(default=None, description="Stored with the message for readers' information.")


class ChannelsReadArgs(Args):
    channel: NameStr = Field(description="A configured channel.")
    limit: int = Field(default=50, ge=1, le=1000, description="Messages per page.")
    cursor: str | None = Field(default=None, description=_CURSOR)
    afterSequence: int | None = Field(
        default=None, ge=0, description="Poll: only messages after this sequence, oldest first."
    )


class ChannelsStatusArgs(Args):
    channel: NameStr | None = Field(default=None, description="One channel; all when omitted.")


class RegisterArgs(Args):
    agentType: TypeStr = Field(description="What kind of agent you are, e.g. developer, reviewer.")
    capabilities: list[TypeStr] = Field(
        default_factory=list, description="What you can do, e.g. typescript, testing (work is claimed by capability)."
    )
    scope: Scope | None = Field(
        default=None, description="Who can see you: private, personal, team (default: same namespace), public."
    )
    # Warp < 1.0 sent this; still accepted, no longer advertised (scope replaces it).
    visibility: SkipJsonSchema[Literal["private", "project-only", "user-only", "public"] | None] = None


class DiscoverArgs(Args):
    agentType: TypeStr | None = Field(default=None, description="Only agents of this type.")
    capability: TypeStr | None = Field(default=None, description="Only agents with this capability.")
    hostname: str | None = Field(default=None, max_length=255, description="Only agents on this host.")
    projectId: ProjectIdStr | None = Field(default=None, description="Only agents in this project (16 hex).")
    status: Status | None = Field(default=None, description="Only agents with this status.")
    scope: Scope | None = Field(default=None, description="Only agents registered with this scope.")
    includeOffline: bool = Field(default=False, description="Also list agents whose heartbeats stopped.")
    limit: int = Field(default=20, ge=1, le=100, description="Agents per page.")
    cursor: str | None = Field(default=None, description=_CURSOR)


class GetInfoArgs(Args):
    guid: GuidStr = Field(description="The agent's GUID (32 hex characters).")


class UpdatePresenceArgs(Args):
    status: Status | None = Field(default=None, description="Your new status.")
    currentTaskCount: int | None = Field(default=None, ge=0, description="How many tasks you are working on.")
    capabilities: list[TypeStr] | None = Field(
        default=None, description="Your full new capability list (replaces the old one)."
    )


class SendDirectArgs(Args):
    recipientGuid: GuidStr = Field(description="The recipient's GUID.")
    message: str = Field(description="The message. At most 64 KiB by default.")
    messageType: TypeStr = Field(default="text", description="e.g. text, work-offer, help-request.")
    metadata: dict[str, Any] | None = Field(default=None, description="Any JSON object (at most 16 KiB).")


class ReadDirectArgs(Args):
    limit: int = Field(default=10, ge=1, le=100, description="At most this many messages (each is consumed).")
    cursor: str | None = Field(default=None, description=_CURSOR)
    messageType: TypeStr | None = Field(default=None, description="Only messages of this type.")
    senderGuid: GuidStr | None = Field(default=None, description="Only messages from this agent.")


# ---- outputs ------------------------------------------------------------------------------------


class HandleOut(Out):
    handle: str
    agentGuid: str


class HandleGetOut(Out):
    handle: str | None
    agentGuid: str


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


class AgentOut(Out):
    agent: AgentEntry


class DiscoverOut(Out):
    agents: list[AgentEntry]
    nextCursor: str | None
    hasMore: bool
    total: int | None


class UpdatePresenceOut(Out):
    agent: AgentEntry
    changed: list[str]


class DeregisterOut(Out):
    guid: str
    status: Literal["offline"]


class SendDirectOut(Out):
    id: str
    recipientGuid: str
    recipientHandle: str
    recipientStatus: Status


class ReadDirectOut(Out):
    messages: list[DirectMessage]
    hasMore: bool
    nextCursor: str | None


# ---- handlers -----------------------------------------------------------------------------------


def _agent_line(a: AgentEntry) -> str:
    caps = f" [{', '.join(a.capabilities)}]" if a.capabilities else ""
    return f"- **{a.handle}** ({a.agentType}) `{a.guid}` {a.status}{caps}, tasks {a.currentTaskCount}"


async def handle_set(c: Coordinator, caller: Caller, a: HandleSetArgs) -> Rendered:
    handle = await c.set_handle(caller, a.handle)
    return HandleOut(handle=handle, agentGuid=caller.guid), f"Handle set to **{handle}** (agent `{caller.guid}`)."


async def handle_get(c: Coordinator, caller: Caller, _a: NoArgs) -> Rendered:
    handle = await c.get_handle(caller)
    text = f"Your handle: **{handle}**" if handle else "No handle set yet: use warp_handle_set."
    return HandleGetOut(handle=handle, agentGuid=caller.guid), f"{text} (agent `{caller.guid}`)"


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
    page = await c.channels.read(caller, a.channel, limit=a.limit, cursor=a.cursor, after_sequence=a.afterSequence)
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


async def registry_register(c: Coordinator, caller: Caller, a: RegisterArgs) -> Rendered:
    scope: Scope = a.scope or (LEGACY_VISIBILITY[a.visibility] if a.visibility else "team")
    handle = await c.get_handle(caller)
    if handle is None:
        handle = await c.set_handle(caller, handle_from_agent_type(a.agentType))
    entry = await c.registry.register(
        caller, handle=handle, agent_type=a.agentType, capabilities=a.capabilities, scope=scope
    )
    return AgentOut(agent=entry), f"Registered as **{entry.handle}** (`{entry.guid}`), scope {entry.scope}.\n" + (
        _agent_line(entry)
    )


async def registry_discover(c: Coordinator, caller: Caller, a: DiscoverArgs) -> Rendered:
    page = await c.registry.discover(
        caller,
        agent_type=a.agentType,
        capability=a.capability,
        hostname=a.hostname,
        project_id=a.projectId,
        status=a.status,
        scope=a.scope,
        include_offline=a.includeOffline,
        limit=a.limit,
        cursor=a.cursor,
    )
    out = DiscoverOut(agents=page.agents, nextCursor=page.next_cursor, hasMore=page.has_more, total=page.total)
    if not page.agents:
        return out, "No agents found."
    head = f"{len(page.agents)} of {page.total} agent(s):\n" if page.total is not None else ""
    return out, head + "\n".join(_agent_line(x) for x in page.agents) + more_hint(page.next_cursor)


async def registry_get_info(c: Coordinator, caller: Caller, a: GetInfoArgs) -> Rendered:
    entry = await c.registry.get_info(caller, a.guid)
    fields = [f"- {k}: {v}" for k, v in entry.model_dump(exclude_none=True).items()]
    return AgentOut(agent=entry), f"Agent **{entry.handle}**:\n" + "\n".join(fields)


async def registry_update_presence(c: Coordinator, caller: Caller, a: UpdatePresenceArgs) -> Rendered:
    if a.status is None and a.currentTaskCount is None and a.capabilities is None:
        raise InvalidArgument("give at least one of status, currentTaskCount, capabilities")
    entry, changed = await c.registry.update_presence(
        caller, status=a.status, current_task_count=a.currentTaskCount, capabilities=a.capabilities
    )
    what = ", ".join(changed) if changed else "nothing (same values)"
    return UpdatePresenceOut(agent=entry, changed=changed), f"Presence updated: {what}.\n" + _agent_line(entry)


async def registry_deregister(c: Coordinator, caller: Caller, _a: NoArgs) -> Rendered:
    await c.registry.deregister(caller)
    return DeregisterOut(guid=caller.guid, status="offline"), f"Deregistered `{caller.guid}`: now offline."


async def messages_send_direct(c: Coordinator, caller: Caller, a: SendDirectArgs) -> Rendered:
    handle = await c.require_registered_handle(caller)
    recipient = await c.registry.find_visible(caller, a.recipientGuid)
    msg = await c.inbox.send(
        caller, handle, recipient, message_type=a.messageType, content=a.message, metadata=a.metadata
    )
    status = c.registry.effective_status(recipient)
    out = SendDirectOut(
        id=msg.id, recipientGuid=recipient.guid, recipientHandle=recipient.handle, recipientStatus=status
    )
    note = "" if status == "online" else f" The recipient is {status}; it will read the message when it checks."
    return out, f"Message `{msg.id}` delivered to **{recipient.handle}**'s inbox.{note}"


async def messages_read_direct(c: Coordinator, caller: Caller, a: ReadDirectArgs) -> Rendered:
    page = await c.inbox.read(
        caller, limit=a.limit, cursor=a.cursor, message_type=a.messageType, sender_guid=a.senderGuid
    )
    out = ReadDirectOut(messages=page.messages, hasMore=page.has_more, nextCursor=page.next_cursor)
    if not page.messages:
        return out, "No direct messages."
    blocks = [
        f"---\n**From:** {m.senderHandle} (`{m.senderGuid}`) · {m.messageType} · {m.timestamp}\n\n{m.content}"
        for m in page.messages
    ]
    return out, f"{len(page.messages)} direct message(s) (now consumed):\n" + "\n".join(blocks) + more_hint(
        page.next_cursor
    )


# ---- the table ----------------------------------------------------------------------------------


CORE_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "handle_set",
        "Set handle",
        "Set your handle (the name other agents see on your messages). Also "
        "updates your registry entry if you are registered.",
        HandleSetArgs,
        HandleOut,
        handle_set,
        idempotent=True,
    ),
    ToolSpec(
        "handle_get",
        "Get handle",
        "Your current handle and agent GUID.",
        NoArgs,
        HandleGetOut,
        handle_get,
        read_only=True,
        idempotent=True,
    ),
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
    ),
    ToolSpec(
        "channels_read",
        "Read channel",
        "Read a channel without consuming it: newest page first (each page "
        "oldest to newest, continue with nextCursor), or pass afterSequence to poll for what is new. Handles are "
        "not unique: identify a sender by senderGuid, set by the server from the sender's identity.",
        ChannelsReadArgs,
        ChannelsReadOut,
        channels_read,
        read_only=True,
        idempotent=True,
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
    ),
    ToolSpec(
        "registry_register",
        "Register agent",
        "Register yourself so other agents can discover you and send "
        "you direct messages: your agent type, capabilities and who may see you (scope). Heartbeats keep you "
        "online. Needed to send DMs, broadcast or claim work.",
        RegisterArgs,
        AgentOut,
        registry_register,
        idempotent=True,
    ),
    ToolSpec(
        "registry_discover",
        "Discover agents",
        "Find agents by type, capability, status, host, project or "
        "scope (only those you may see). Pages are stable; continue with nextCursor and the same filters.",
        DiscoverArgs,
        DiscoverOut,
        registry_discover,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        "registry_get_info",
        "Get agent info",
        "One agent's registry entry by GUID (not_found if it does not exist or you may not see it).",
        GetInfoArgs,
        AgentOut,
        registry_get_info,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        "registry_update_presence",
        "Update presence",
        "Change your status (online, busy, offline), current task count or capabilities; give at least one.",
        UpdatePresenceArgs,
        UpdatePresenceOut,
        registry_update_presence,
        idempotent=True,
    ),
    ToolSpec(
        "registry_deregister",
        "Deregister agent",
        "Mark yourself offline (your entry and inbox are kept).",
        NoArgs,
        DeregisterOut,
        registry_deregister,
        idempotent=True,
    ),
    ToolSpec(
        "messages_send_direct",
        "Send direct message",
        "Send a direct message to an agent you can see, by "
        "GUID (needs registration). It waits in the recipient's inbox even while it is offline.",
        SendDirectArgs,
        SendDirectOut,
        messages_send_direct,
    ),
    ToolSpec(
        "messages_read_direct",
        "Read direct messages",
        "Read your direct messages, oldest first. Returned "
        "messages are consumed (read once); messages that do not match the filters stay. Handles are not unique: "
        "identify a sender by senderGuid, set by the server from the sender's identity.",
        ReadDirectArgs,
        ReadDirectOut,
        messages_read_direct,
        destructive=True,
    ),
)

TOOLS: tuple[ToolSpec, ...] = CORE_TOOLS + WORK_TOOLS
