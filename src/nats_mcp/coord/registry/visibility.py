"""The registry visibility boundary: who may see an agent entry, which of its fields, and its effective status.

Pure rules, no I/O. Scopes (``reference/warp.md`` §3.3, keyed on the authenticated owner instead of
``$USER``): ``private`` only self; ``personal`` the same owner in any namespace; ``team`` the same
namespace; ``public`` everyone. A visible entry of another agent shows its hostname only when public or
in the viewer's namespace, its projectId only in the viewer's namespace, never its registeredAt, and
names its namespace when that is not the viewer's. Status is stored, but an agent whose last heartbeat
is older than the stale threshold reads ``offline`` — computed at read time, so no sweeper has to run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, get_args

from nats_mcp.coord.context import Caller
from nats_mcp.coord.models import AgentEntry, AgentRecord, Scope, Status

SCOPES: Final[tuple[Scope, ...]] = get_args(Scope)
STATUSES: Final[tuple[Status, ...]] = get_args(Status)
MIRRORED_SCOPES: Final[frozenset[str]] = frozenset({"public", "personal"})
"""Scopes other namespaces may see, hence copied into the shared directory bucket."""


def format_time(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds (``2025-01-31T12:00:00.123Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """ISO 8601 (as written by :func:`format_time`) as epoch seconds; a naive time is taken as UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def is_self(viewer: Caller, record: AgentRecord) -> bool:
    return record.guid == viewer.guid and record.namespace == viewer.namespace


def can_see(viewer: Caller, record: AgentRecord) -> bool:
    """Whether ``viewer`` may know that ``record`` exists (discover, get_info, direct messages)."""
    if is_self(viewer, record):
        return True
    if record.scope == "public":
        return True
    if record.scope == "team":
        return record.namespace == viewer.namespace
    if record.scope == "personal":
        # An empty owner is "unknown", never a match (Warp: both user names must be defined).
        return bool(viewer.owner) and record.owner == viewer.owner
    return False


def shows_hostname(viewer: Caller, record: AgentRecord) -> bool:
    return is_self(viewer, record) or record.scope == "public" or record.namespace == viewer.namespace


def shows_project(viewer: Caller, record: AgentRecord) -> bool:
    return is_self(viewer, record) or record.namespace == viewer.namespace


def stale_cutoff(now: float, stale_after_s: float) -> float:
    """Heartbeats before this moment are stale; exactly at the threshold is not (as Warp's lifecycle rule)."""
    return now - stale_after_s


def is_stale(heartbeat_ts: float, now: float, stale_after_s: float) -> bool:
    return heartbeat_ts < stale_cutoff(now, stale_after_s)


def effective_status(record: AgentRecord, now: float, stale_after_s: float) -> Status:
    if record.status == "offline" or is_stale(parse_time(record.lastHeartbeat), now, stale_after_s):
        return "offline"
    return record.status


def entry_for(viewer: Caller, record: AgentRecord, now: float, stale_after_s: float) -> AgentEntry:
    """``record`` as ``viewer`` may see it; the caller has already checked :func:`can_see`."""
    own = is_self(viewer, record)
    return AgentEntry(
        guid=record.guid,
        handle=record.handle,
        agentType=record.agentType,
        capabilities=list(record.capabilities),
        scope=record.scope,
        status=effective_status(record, now, stale_after_s),
        currentTaskCount=record.currentTaskCount,
        lastHeartbeat=record.lastHeartbeat,
        registeredAt=record.registeredAt if own else None,
        hostname=record.hostname if shows_hostname(viewer, record) else None,
        projectId=record.projectId if shows_project(viewer, record) else None,
        namespace=record.namespace if record.namespace != viewer.namespace else None,
    )
