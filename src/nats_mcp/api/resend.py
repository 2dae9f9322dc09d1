"""The resend boundary of tool calls: which requests are deduplicated (:mod:`nats_mcp.coord.replay`), under what key.

A ``tools/call`` is deduplicated when all of these hold:

* its tool has effects a second run would repeat: neither read-only nor idempotent by its annotations (sending
  to a channel or an inbox, broadcasting, claiming, completing, failing, reading-and-consuming DMs, DLQ retry and
  discard, the ``nats_*`` writes). Reads and idempotent writes (handle, register, presence, progress) take no
  record: a second run is harmless, and they keep the hot path without the extra KV writes.
* it belongs to an MCP session: an HTTP request with an ``Mcp-Session-Id`` on protocol 2025-11-25 or earlier.
  The key is (principal, agent, session id, JSON-RPC request id), hashed. Requests without a session are not
  deduplicated: on stdio one connection is one process (a resend after a cut is a new process with a new
  session of its own), the 2026-07-28 revision has no sessions and its request ids repeat across connections
  (no sound key exists without a client-chosen idempotency key), and gRPC calls carry no request id of the
  client's.

The resend of a refused call is judged again: the guard runs before the record is looked at, and a refusal
never reaches it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext

from nats_mcp.api.tools.base import OpsSpec, ToolSpec
from nats_mcp.coord.replay import Outcome, call_token
from nats_mcp.security.principal import Principal

SESSION_HEADER = "mcp-session-id"
LAST_SESSION_REVISION = "2025-11-25"
"""The newest protocol revision with sessions (revisions are dates, so they compare as strings)."""
RETRYABLE = frozenset({"nats_unavailable"})
"""Error codes not kept as the outcome: the call did nothing durable that a resend should be answered with."""

ErrorResult = Callable[..., types.CallToolResult]


def deduplicated(spec: ToolSpec | OpsSpec) -> bool:
    """Whether calls of the tool take a record: a second run would have effects again."""
    return not spec.read_only and not spec.idempotent


def token_of(ctx: ServerRequestContext[Any], principal: Principal) -> str | None:
    """The call token of the request, or None when the request belongs to no session (see the module docstring)."""
    if ctx.request_id is None or ctx.protocol_version > LAST_SESSION_REVISION:
        return None
    headers = getattr(ctx.request, "headers", None)
    session = headers.get(SESSION_HEADER) if headers is not None else None
    if not isinstance(session, str) or not session:
        return None
    return call_token(f"{principal.key}\0{principal.agent or ''}", session, ctx.request_id)


class ResultCodec:
    """Tool results as stored outcomes, and the answers of the replay itself (:class:`nats_mcp.coord.replay.Codec`)."""

    def __init__(self, error_result: ErrorResult, code_of: Callable[[types.CallToolResult], str]) -> None:
        self._error = error_result
        self._code_of = code_of

    def encode(self, result: types.CallToolResult) -> Outcome | None:
        if result.is_error and self._code_of(result) in RETRYABLE:
            return None
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)

    def decode(self, outcome: Outcome) -> types.CallToolResult:
        return types.CallToolResult.model_validate(outcome)

    def busy(self, retry_after_s: float) -> types.CallToolResult:
        return self._error(
            "conflict",
            "this request (same session and request id) is still running in an earlier attempt; send it again "
            "shortly to get its outcome",
            retry_after_s=max(1.0, retry_after_s),
        )

    def reused(self) -> types.CallToolResult:
        return self._error(
            "invalid_argument",
            "this request id was already used in this session for another call (other tool or arguments); "
            "each request needs a new id",
        )

    def unkept(self) -> types.CallToolResult:
        return self._error(
            "conflict",
            "this request (same session and request id) already ran, but its result was not kept (too large); "
            "read the current state instead of sending it again",
        )
