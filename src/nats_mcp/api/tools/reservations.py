"""The reservation tools: advisory leases on project paths and globs, with fencing tokens (warp_reservations_*)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nats_mcp.api.schema import GuidStr, UuidStr
from nats_mcp.api.tools.base import Args, Out, Rendered, ToolSpec
from nats_mcp.coord.context import Caller
from nats_mcp.coord.reservations.models import Conflict, Mode, ReservationInfo
from nats_mcp.coord.reservations.service import DEFAULT_TTL_S, MAX_REASON, MAX_RESOURCES, MAX_TTL_S, MAX_WAIT_MS
from nats_mcp.coord.service import Coordinator
from nats_mcp.security.needs import Admin, ReservationsRead, Reserve, Waits

_ID = "The reservation's id (reservationId from warp_reservations_acquire)."
_PATHS = "Project-relative paths or globs ('*', '?' in a segment; '**' any depth: src/api/**). No '..'."


# ---- inputs -------------------------------------------------------------------------------------


class AcquireArgs(Args):
    resources: list[str] = Field(min_length=1, max_length=MAX_RESOURCES, description=_PATHS)
    mode: Mode = Field(default="exclusive", description="shared: other shared holders allowed.")
    ttlSeconds: int = Field(default=DEFAULT_TTL_S, ge=1, le=MAX_TTL_S, description="Lifetime; renew to extend.")
    reason: str = Field(default="", max_length=MAX_REASON, description="Shown to others.")
    waitMs: int = Field(default=0, ge=0, le=MAX_WAIT_MS, description="Wait this long for conflicts to end.")


class RenewArgs(Args):
    reservationId: UuidStr = Field(description=_ID)
    ttlSeconds: int | None = Field(
        default=None, ge=1, le=MAX_TTL_S, description="New lifetime from now (default: the reservation's own)."
    )


class ReleaseArgs(Args):
    reservationId: UuidStr = Field(description=_ID)


class ListArgs(Args):
    resource: str | None = Field(default=None, description="Only reservations overlapping this path or glob.")
    holderGuid: GuidStr | None = Field(default=None, description="Only this agent's reservations.")
    mine: bool = Field(default=False, description="Only your own reservations.")


# ---- outputs ------------------------------------------------------------------------------------


class AcquireOut(Out):
    granted: bool
    reservationId: str | None
    fencingToken: int | None
    expiresAt: str | None
    resources: list[str]
    mode: Mode
    conflicts: list[Conflict]
    waitedMs: int


class RenewOut(Out):
    reservationId: str
    fencingToken: int
    expiresAt: str


class ReleaseOut(Out):
    reservationId: str
    released: Literal[True]
    holderGuid: str
    resources: list[str]


class ListOut(Out):
    reservations: list[ReservationInfo]
    count: int


# ---- handlers -----------------------------------------------------------------------------------


def _line(r: ReservationInfo) -> str:
    who = f"{r.holderHandle} (`{r.holderGuid}`)" if r.holderHandle else f"`{r.holderGuid}`"
    why = f" — {r.reason}" if r.reason else ""
    return f"- `{r.reservationId}` {r.mode} {', '.join(r.resources)} · {who} · until {r.expiresAt}{why}"


async def reservations_acquire(c: Coordinator, caller: Caller, a: AcquireArgs) -> Rendered:
    handle = await c.get_handle(caller)
    outcome = await c.reservations.acquire(
        caller, handle, a.resources, mode=a.mode, ttl_s=a.ttlSeconds, reason=a.reason, wait_ms=a.waitMs
    )
    r = outcome.reservation
    out = AcquireOut(
        granted=outcome.granted,
        reservationId=r.reservationId if r else None,
        fencingToken=r.fencingToken if r else None,
        expiresAt=r.expiresAt if r else None,
        resources=r.resources if r else [],
        mode=a.mode,
        conflicts=outcome.conflicts,
        waitedMs=outcome.waitedMs,
    )
    if r is not None:
        return out, (
            f"Reserved {', '.join(r.resources)} ({r.mode}) until {r.expiresAt}: reservation `{r.reservationId}`, "
            f"fencing token {r.fencingToken}. Renew before it expires; release when done."
        )
    lines = [
        f"- {x.resource} overlaps {x.heldResource}, held {x.mode} by {x.holderHandle or 'an agent'} "
        f"(`{x.holderGuid}`) until {x.expiresAt}" + (f" — {x.reason}" if x.reason else "")
        for x in outcome.conflicts
    ]
    return out, "Not reserved (nothing was taken); in the way:\n" + "\n".join(lines) + (
        "\n\nAsk the holder (warp_messages_send_direct), or retry with waitMs."
    )


async def reservations_renew(c: Coordinator, caller: Caller, a: RenewArgs) -> Rendered:
    r = await c.reservations.renew(caller, a.reservationId, a.ttlSeconds)
    out = RenewOut(reservationId=r.reservationId, fencingToken=r.fencingToken, expiresAt=r.expiresAt)
    return out, f"Reservation `{r.reservationId}` renewed until {r.expiresAt}."


def _released(r: ReservationInfo) -> ReleaseOut:
    return ReleaseOut(reservationId=r.reservationId, released=True, holderGuid=r.holderGuid, resources=r.resources)


async def reservations_release(c: Coordinator, caller: Caller, a: ReleaseArgs) -> Rendered:
    r = await c.reservations.release(caller, a.reservationId)
    return _released(r), f"Reservation `{r.reservationId}` released ({', '.join(r.resources)})."


async def reservations_list(c: Coordinator, caller: Caller, a: ListArgs) -> Rendered:
    found = await c.reservations.current(resource=a.resource, holder=a.holderGuid)
    if a.mine:  # with holderGuid too: both filters apply
        found = [r for r in found if r.holderGuid == caller.guid]
    out = ListOut(reservations=[r.info() for r in found], count=len(found))
    if not found:
        return out, "No reservations."
    return out, f"{len(found)} reservation(s):\n" + "\n".join(map(_line, found))


async def reservations_force_release(c: Coordinator, _caller: Caller, a: ReleaseArgs) -> Rendered:
    r = await c.reservations.force_release(a.reservationId)
    return _released(r), (
        f"Reservation `{r.reservationId}` of `{r.holderGuid}` force-released ({', '.join(r.resources)})."
    )


# ---- the table ----------------------------------------------------------------------------------


RESERVATION_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "reservations_acquire",
        "Reserve project resources",
        "Reserve project paths or globs (advisory: others see you work on them), all or none. Granted: "
        "reservationId and an ever-growing fencingToken. Refused: the holders in the way (ask them, or use waitMs).",
        AcquireArgs,
        AcquireOut,
        reservations_acquire,
        needs=(Reserve("resources"), Waits("waitMs", 0)),
    ),
    ToolSpec(
        "reservations_renew",
        "Renew a reservation",
        "Extend your reservation (same fencing token) before it expires.",
        RenewArgs,
        RenewOut,
        reservations_renew,
        idempotent=True,
    ),
    ToolSpec(
        "reservations_release",
        "Release a reservation",
        "Release your reservation so others may take its resources.",
        ReleaseArgs,
        ReleaseOut,
        reservations_release,
        destructive=True,
    ),
    ToolSpec(
        "reservations_list",
        "List reservations",
        "The namespace's live reservations (filters: overlapping a path or glob, one agent's, yours).",
        ListArgs,
        ListOut,
        reservations_list,
        read_only=True,
        idempotent=True,
        needs=(ReservationsRead(),),
    ),
    ToolSpec(
        "reservations_force_release",
        "Force-release a reservation",
        "Admin: end any agent's reservation. Audited.",
        ReleaseArgs,
        ReleaseOut,
        reservations_force_release,
        destructive=True,
        needs=(Admin("reservations"),),
    ),
)
