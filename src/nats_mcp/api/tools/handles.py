"""The handle tools: the name an agent shows on its messages (warp_handle_*)."""

from __future__ import annotations

from pydantic import Field

from nats_mcp.api.schema import NameStr
from nats_mcp.api.tools.base import Args, NoArgs, Out, Rendered, ToolSpec
from nats_mcp.coord.context import Caller
from nats_mcp.coord.service import Coordinator

# ---- inputs -------------------------------------------------------------------------------------


class HandleSetArgs(Args):
    handle: NameStr = Field(description="The name other agents see on your messages: a-z, 0-9 and '-'.")


# ---- outputs ------------------------------------------------------------------------------------


class HandleOut(Out):
    handle: str
    agentGuid: str


class HandleGetOut(Out):
    handle: str | None
    agentGuid: str


# ---- handlers -----------------------------------------------------------------------------------


async def handle_set(c: Coordinator, caller: Caller, a: HandleSetArgs) -> Rendered:
    handle = await c.set_handle(caller, a.handle)
    return HandleOut(handle=handle, agentGuid=caller.guid), f"Handle set to **{handle}** (agent `{caller.guid}`)."


async def handle_get(c: Coordinator, caller: Caller, _a: NoArgs) -> Rendered:
    handle = await c.get_handle(caller)
    text = f"Your handle: **{handle}**" if handle else "No handle set yet: use warp_handle_set."
    return HandleGetOut(handle=handle, agentGuid=caller.guid), f"{text} (agent `{caller.guid}`)"


# ---- the table ----------------------------------------------------------------------------------


HANDLE_TOOLS: tuple[ToolSpec, ...] = (
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
)
