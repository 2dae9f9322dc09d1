"""The request-context boundary: which request and principal the running task serves, for every log line it writes.

Set by the guard around each tool call (every transport goes through it) and read by the log formatter
(:mod:`nats_mcp.observe.logging`); contextvars, so concurrent calls never see each other's values.
"""

from __future__ import annotations

import contextvars
import itertools
import os
from typing import NamedTuple

_PREFIX = os.urandom(3).hex()  # ids of different processes do not collide in a merged log
_ids = itertools.count(1)

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("nats_mcp_request_id", default=None)
principal: contextvars.ContextVar[str | None] = contextvars.ContextVar("nats_mcp_principal", default=None)
tool: contextvars.ContextVar[str | None] = contextvars.ContextVar("nats_mcp_tool", default=None)


class Scope(NamedTuple):
    request: contextvars.Token[str | None]
    principal: contextvars.Token[str | None]
    tool: contextvars.Token[str | None]


def new_id() -> str:
    """A short id unique within this process (and, with its random prefix, across processes in practice)."""
    return f"{_PREFIX}-{next(_ids):x}"


def enter(subject: str, tool_name: str | None = None) -> Scope:
    """Mark the current task as serving a new request of ``subject``; undo with :func:`leave`."""
    return Scope(request_id.set(new_id()), principal.set(subject), tool.set(tool_name))


def leave(scope: Scope) -> None:
    request_id.reset(scope.request)
    principal.reset(scope.principal)
    tool.reset(scope.tool)


def current() -> dict[str, str]:
    """The fields known for the current task (empty outside a request)."""
    out: dict[str, str] = {}
    rid = request_id.get()
    if rid is not None:
        out["request_id"] = rid
        who = principal.get()
        if who is not None:
            out["principal"] = who
        name = tool.get()
        if name is not None:
            out["tool"] = name
    return out
