"""The request-context boundary: which request and principal the running task serves, and the ids its effects take.

Set by the guard around each tool call (every transport goes through it) and read by the log formatter
(:mod:`nats_mcp.observe.logging`); one context variable, so concurrent calls never see each other's values.

A second one holds the effect key of a deduplicated call (:mod:`nats_mcp.coord.replay`): while it is set,
:func:`new_uuid` derives the ids of the records the call stores (channel message, DM, work item) from that key
instead of drawing them at random. Those ids are also the ``Nats-Msg-Id`` of their publishes, so a re-run of
the same call (a resend after the first process died mid-call) publishes the same ids and JetStream drops the
copies, answering the first sequence.
"""

from __future__ import annotations

import contextvars
import hashlib
import itertools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

_PREFIX = os.urandom(3).hex()  # ids of different processes do not collide in a merged log
_ids = itertools.count(1)


class Request(NamedTuple):
    """The request the running task serves, as log lines name it."""

    request_id: str
    principal: str
    tool: str | None


_request: contextvars.ContextVar[Request | None] = contextvars.ContextVar("nats_mcp_request", default=None)

Scope = contextvars.Token[Request | None]
"""What :func:`enter` returns and :func:`leave` takes back."""


def new_id() -> str:
    """A short id unique within this process (and, with its random prefix, across processes in practice)."""
    return f"{_PREFIX}-{next(_ids):x}"


def enter(subject: str, tool_name: str | None = None) -> Scope:
    """Mark the current task as serving a new request of ``subject``; undo with :func:`leave`."""
    return _request.set(Request(new_id(), subject, tool_name))


def leave(scope: Scope) -> None:
    _request.reset(scope)


def current() -> dict[str, str]:
    """The fields known for the current task (empty outside a request)."""
    request = _request.get()
    if request is None:
        return {}
    out = {"request_id": request.request_id, "principal": request.principal}
    if request.tool is not None:
        out["tool"] = request.tool
    return out


class _Effects:
    """The effect key of a deduplicated call and how many ids it has drawn (shared by the call's child tasks)."""

    __slots__ = ("drawn", "key")

    def __init__(self, key: str) -> None:
        self.key = key
        self.drawn = 0


_effects: contextvars.ContextVar[_Effects | None] = contextvars.ContextVar("nats_mcp_effects", default=None)


@contextmanager
def effects(key: str) -> Iterator[None]:
    """Derive the ids :func:`new_uuid` hands out in this block from ``key`` (a deduplicated call's key)."""
    token = _effects.set(_Effects(key))
    try:
        yield
    finally:
        _effects.reset(token)


def new_uuid() -> str:
    """A lowercase UUID for a new record: random, or inside :func:`effects` the n-th one derived from its key.

    A re-run of the same call draws the same ids in the same order (the tools draw them before any await that
    could reorder them), so its publishes carry the first attempt's ``Nats-Msg-Id`` values.
    """
    current = _effects.get()
    if current is None:
        return str(uuid.uuid4())
    current.drawn += 1
    digest = hashlib.sha256(f"{current.key}:{current.drawn}".encode()).digest()[:16]
    return str(uuid.UUID(bytes=digest, version=4))
