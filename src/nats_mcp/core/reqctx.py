"""The request-context boundary: which request and principal the running task serves, for every log line it writes.

Set by the guard around each tool call (every transport goes through it) and read by the log formatter
(:mod:`nats_mcp.observe.logging`); one context variable, so concurrent calls never see each other's values.
"""

from __future__ import annotations

import contextvars
import itertools
import os
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
