"""The registry tools: agents register, keep their presence, discover each other (warp_registry_*)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from nats_mcp.api.schema import GuidStr, ProjectIdStr, TypeStr
from nats_mcp.api.tools.base import Args, NoArgs, Out, Rendered, ToolSpec, more_hint
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import InvalidArgument
from nats_mcp.coord.models import LEGACY_VISIBILITY, AgentEntry, Scope, Status
from nats_mcp.coord.service import Coordinator, handle_from_agent_type

_CURSOR = "nextCursor of the previous page, to continue (same filters)."


# ---- inputs -------------------------------------------------------------------------------------


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


# ---- outputs ------------------------------------------------------------------------------------


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


# ---- handlers -----------------------------------------------------------------------------------


def _agent_line(a: AgentEntry) -> str:
    caps = f" [{', '.join(a.capabilities)}]" if a.capabilities else ""
    return f"- **{a.handle}** ({a.agentType}) `{a.guid}` {a.status}{caps}, tasks {a.currentTaskCount}"


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
    await c.reservations.release_agent(caller.guid)  # a deregistered agent holds nothing
    return DeregisterOut(guid=caller.guid, status="offline"), f"Deregistered `{caller.guid}`: now offline."


# ---- the table ----------------------------------------------------------------------------------


REGISTRY_TOOLS: tuple[ToolSpec, ...] = (
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
)
