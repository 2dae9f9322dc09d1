"""The read-scope boundary: which capabilities' queues, work boundaries and channels the running call may see, per call.

Queue status and dead-letter listings without a capability argument span every capability of the namespace;
the server narrows them to what the caller's policy grants (a claim or broadcast grant) around each such
call. Channel status without a channel argument likewise shows only the channels the policy lets the caller
read, and a reservation listing only the reservations of paths the policy lets the caller reserve. Work items of a
boundary (``corporate``, ``personal``, ...) are seen and taken only by a caller the policy grants that boundary for
the item's capability, in every work call: a claim pulls only from the consumers of such boundaries, a listing, a
status count or a lookup leaves the others out as if they did not exist. Contextvars,
so concurrent calls never see each other's scope; unset (the CLI, the dashboard, tests of the domain) means
every capability, channel and reservation.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

Readable = Callable[[str], bool]
BoundaryReader = Callable[[str, str, bool], bool]
"""(capability, boundary, take) -> whether the caller may see (take False) or claim (take True) such items."""

_readable: contextvars.ContextVar[Readable | None] = contextvars.ContextVar("nats_mcp_readable_caps", default=None)
_channels: contextvars.ContextVar[Readable | None] = contextvars.ContextVar("nats_mcp_readable_chans", default=None)
_reserved: contextvars.ContextVar[Readable | None] = contextvars.ContextVar("nats_mcp_readable_resv", default=None)
_bounds: contextvars.ContextVar[BoundaryReader | None] = contextvars.ContextVar("nats_mcp_bounds", default=None)


def visible(capability: str) -> bool:
    """Whether the running call may see ``capability``'s queue."""
    readable = _readable.get()
    return readable is None or readable(capability)


def narrowed() -> bool:
    """Whether the running call sees only some capabilities (a listing must not reveal totals over the rest)."""
    return _readable.get() is not None


@contextlib.contextmanager
def limited_to(readable: Readable | None) -> Iterator[None]:
    """Within the block, only capabilities ``readable`` accepts are visible (None: all of them)."""
    token = _readable.set(readable)
    try:
        yield
    finally:
        _readable.reset(token)


def channel_visible(channel: str) -> bool:
    """Whether the running call may see ``channel``'s counters."""
    readable = _channels.get()
    return readable is None or readable(channel)


def reservation_visible(resource: str) -> bool:
    """Whether the running call may see reservations of ``resource`` (a normalised path or glob)."""
    readable = _reserved.get()
    return readable is None or readable(resource)


@contextlib.contextmanager
def reservations_limited_to(readable: Readable | None) -> Iterator[None]:
    """Within the block, only reservations of resources ``readable`` accepts are visible (None: all of them)."""
    token = _reserved.set(readable)
    try:
        yield
    finally:
        _reserved.reset(token)


def boundary_visible(capability: str, boundary: str | None, *, take: bool = False) -> bool:
    """Whether the running call may see (``take``: claim) items of ``capability`` in ``boundary`` (None: unbounded
    items, which every caller of the capability may see and take)."""
    if boundary is None:
        return True
    reader = _bounds.get()
    return reader is None or reader(capability, boundary, take)


def boundaries_narrowed() -> bool:
    """Whether some boundaries may be hidden from the running call (a count must then leave their items out)."""
    return _bounds.get() is not None


@contextlib.contextmanager
def boundaries_limited_to(reader: BoundaryReader | None) -> Iterator[None]:
    """Within the block, only items of boundaries ``reader`` accepts are visible (None: every boundary)."""
    token = _bounds.set(reader)
    try:
        yield
    finally:
        _bounds.reset(token)


class Scope:
    """All four limits of one call at once (what the server sets around each tool call): each variable is set
    for the block, except one that would be set to None while it is None already (the usual case, for a tool
    that reads none of them: nothing to set, nothing to reset)."""

    __slots__ = ("_tokens", "_values")

    def __init__(
        self,
        readable: Readable | None,
        bounds: BoundaryReader | None,
        channels: Readable | None,
        reserved: Readable | None,
    ) -> None:
        self._values = (readable, bounds, channels, reserved)
        self._tokens: list[tuple[contextvars.ContextVar[object], contextvars.Token[object]]] = []

    def __enter__(self) -> None:
        variables: tuple[contextvars.ContextVar[object], ...] = (_readable, _bounds, _channels, _reserved)  # type: ignore[assignment]
        for var, value in zip(variables, self._values, strict=True):
            if value is not None or var.get() is not None:
                self._tokens.append((var, var.set(value)))

    def __exit__(self, *_: object) -> None:
        tokens, self._tokens = self._tokens, []
        for var, token in reversed(tokens):
            var.reset(token)
