"""The reservation data boundary: the stored table, one reservation, a conflict, and the outcome of an acquire."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["exclusive", "shared"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReservationInfo(_Model):
    # A reservation as tools show it (no docstring: it would be repeated in every tool's outputSchema).
    reservationId: str
    holderGuid: str
    holderHandle: str | None = None
    resources: list[str]
    mode: Mode
    reason: str = ""
    ttlSeconds: int
    fencingToken: int
    acquiredAt: str
    expiresAt: str


class Reservation(ReservationInfo):
    """One reservation as stored: what tools show, and its expiry as epoch seconds (what expiry is decided by)."""

    expires: float

    def info(self) -> ReservationInfo:
        return ReservationInfo.model_validate(self.model_dump(exclude={"expires"}))


class Table(_Model):
    """The namespace's reservation table (one KV key, written by compare-and-set).

    ``fence`` is the last fencing token handed out: it only grows, so every grant's token is larger than every
    earlier grant's, for whatever resources (hence also per resource and across overlapping globs).
    """

    version: Literal[1] = 1
    fence: int = 0
    reservations: list[Reservation] = Field(default_factory=list)


class Conflict(_Model):
    # A requested resource and the live reservation of another agent in its way (no docstring: see above).

    resource: str
    heldResource: str
    reservationId: str
    holderGuid: str
    holderHandle: str | None
    mode: Mode
    reason: str
    expiresAt: str


class Outcome(_Model):
    """An acquire's result: granted (the reservation) or refused (the conflicts)."""

    granted: bool
    reservation: Reservation | None = None
    conflicts: list[Conflict] = Field(default_factory=list)
    waitedMs: int = 0
