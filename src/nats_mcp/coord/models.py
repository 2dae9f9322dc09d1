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
    threadId: str | None = None
    """The conversation the message belongs to (None: mail stored before threads existed)."""
    inReplyTo: str | None = None
    """The id of the message this one answers, as its sender gave it."""


class WorkItem(_Model):
    """A unit of work as broadcast, stored and handed to a claimer."""

    id: str
    taskId: str
    capability: str
    boundary: str | None = None
    """The work boundary the item belongs to (e.g. corporate); None: unbounded, any taker of the capability."""
    description: str
    priority: int
    offeredBy: str
    offeredAt: str
    attempts: int = 0
    """Deliveries so far (the claim that returns the item counts)."""
    deadline: str | None = None
    contextData: dict[str, Any] | None = None
    scope: Scope | None = None
    leaseExpiresAt: str | None = None
    """Set on a claimed item: when the claim runs out unless renewed with warp_work_progress."""
    dependsOn: list[str] | None = None
    """Items that had to complete before this one could be claimed."""

    @classmethod
    def parse(cls, data: bytes) -> WorkItem | None:
        """The item in a stored work message (``attempts`` there: the count carried over by a DLQ retry)."""
        try:
            return cls.model_validate_json(data)
        except ValueError:
            return None


class DlqItem(_Model):
    """A dead-lettered work item, with why it failed and the errors of its attempts."""

    id: str
    workItem: WorkItem
    reason: Literal["unrecoverable", "max_attempts", "deadline_passed", "dependency_failed"]
    attempts: int
    failedAt: str
    errors: list[str] = Field(default_factory=list)
    dependency: str | None = None
    """With reason dependency_failed: the item it depended on that was dead-lettered or cancelled."""


class ItemStatus(_Model):
    """Where one work item stands, for someone watching it (the human CLI's ``work watch``)."""

    id: str
    state: Literal["waiting", "claimed", "retrying", "completed", "dead_lettered", "cancelled"]
    """waiting: queued and not claimed yet (or unknown here: an id of another namespace, or expired state);
    retrying: released after a lease ran out or a recoverable fail, back in the queue."""
    claimer: str | None = None
    attempts: int = 0
    progress: int | None = None
    note: str | None = None
    reason: str | None = None
    """Why it was dead-lettered."""
    errors: list[str] = Field(default_factory=list)
    settledAt: str | None = None
    result: Any = None


class QueueStatus(_Model):
    capability: str
    pending: int
    """Stored and not handed out: never claimed yet, or back in the queue."""
    inFlight: int
    """Handed out and not yet settled: claimed, lease ran out awaiting re-offer, or held back after a retryable fail."""
    deadLettered: int
    oldestPendingSeconds: float | None
