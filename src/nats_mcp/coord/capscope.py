"""The read-scope boundary: which capabilities' queues and which channels the running call may see, set per call.

Queue status and dead-letter listings without a capability argument span every capability of the namespace;
the server narrows them to what the caller's policy grants (a claim or broadcast grant) around each such
call. Channel status without a channel argument likewise shows only the channels the policy lets the caller
read, and a reservation listing only the reservations of paths the policy lets the caller reserve. Contextvars,
so concurrent calls never see each other's scope; unset (the CLI, the dashboard, tests of the domain) means
every capability, channel and reservation.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

Readable = Callable[[str], bool]

_readable: contextvars.ContextVar[Readable | None] = contextvars.ContextVar("nats_mcp_readable_caps", default=None)
_channels: contextvars.ContextVar[Readable | None] = contextvars.ContextVar("nats_mcp_readable_chans", default=None)
_reserved: contextvars.ContextVar[Readable | None] = contextvars.ContextVar("nats_mcp_readable_resv", default=None)


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


@contextlib.contextmanager
def channels_limited_to(readable: Readable | None) -> Iterator[None]:
    """Within the block, only channels ``readable`` accepts are visible (None: all of them)."""
    token = _channels.set(readable)
    try:
        yield
    finally:
        _channels.reset(token)


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
