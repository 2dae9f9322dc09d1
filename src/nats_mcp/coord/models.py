"""The domain data boundary: the shapes stored in NATS and returned by tools (camelCase, as the tool contract)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Scope = Literal["private", "personal", "team", "public"]
Status = Literal["online", "busy", "offline"]
LEGACY_VISIBILITY: dict[str, Scope] = {
    "private": "private",
    "project-only": "team",
    "user-only": "personal",
    "public": "public",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AgentRecord(_Model):
    """A registry entry as stored in the namespace's KV bucket (never shown as is)."""

    guid: str
    namespace: str
    handle: str
    agentType: str
    capabilities: list[str] = Field(default_factory=list)
    scope: Scope = "team"
    status: Status = "online"
    currentTaskCount: int = 0
    lastHeartbeat: str
    registeredAt: str
    hostname: str | None = None
    projectId: str | None = None
    owner: str = ""
    """Key of the authenticated user, for ``personal`` scope. Never returned by a tool."""


class AgentEntry(_Model):
    """A registry entry as a viewer may see it (fields redacted by visibility)."""

    guid: str
    handle: str
    agentType: str
    capabilities: list[str]
    scope: Scope
    status: Status
    currentTaskCount: int
    lastHeartbeat: str
    registeredAt: str | None = None
    hostname: str | None = None
    projectId: str | None = None
    namespace: str | None = None


class ChannelInfo(_Model):
    name: str
    description: str
    maxMessages: int
    maxBytes: int
    maxAge: str


class ChannelMessage(_Model):
    id: str
    sequence: int
    handle: str
    senderGuid: str
    message: str
    timestamp: str
    scope: Scope | None = None


class ChannelStatus(_Model):
    name: str
    messages: int
    bytes: int
    firstSequence: int
    lastSequence: int


class DirectMessage(_Model):
    id: str
    senderGuid: str
    senderHandle: str
    messageType: str
    content: str
    metadata: dict[str, Any] | None = None
    timestamp: str
