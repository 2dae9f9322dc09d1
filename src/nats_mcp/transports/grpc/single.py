"""The boundary of one 2026-07-28 request served on its own: no session loop, the SDK's single-exchange driver.

A ``Call``, a ``Listen`` and a typed ``CallTool`` each carry exactly one request. Running a whole SDK server
loop (memory streams, a task group, the era detection, the dispatcher) for each of them cost ~2 ms of server
CPU per call; the SDK's own 2026-07-28 HTTP entry serves such a request with ``serve_one`` instead, and so
does this module: the per-request envelope is checked by the SDK's validation ladder
(``classify_inbound_request``), the request runs through ``serve_one`` (the same handlers, middleware and
tool table as a session), and its outcome is mapped to the JSON-RPC reply by the SDK's shared error ladder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.connection import Connection, NotifyOnlyOutbound
from mcp.server.runner import modern_error_data, serve_one
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.inbound import InboundLadderRejection, classify_inbound_request
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp.shared.message import SessionMessage
from mcp.shared.transport_context import TransportContext
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from nats_mcp.api.direct import progress_params

Emit = Callable[[SessionMessage], Awaitable[None]]
TRANSPORT = TransportContext(kind="grpc", can_send_request=False)


@dataclass
class _OneRequest:
    """The ``DispatchContext`` of one request: notifications go to ``emit``; no server-initiated requests."""

    emit: Emit
    request_id: types.RequestId
    progress_token: types.ProgressToken | None = None
    transport: TransportContext = TRANSPORT
    message_metadata: None = None
    can_send_request: bool = False
    cancel_requested: anyio.Event = field(default_factory=anyio.Event)

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        raise NoBackChannelError(method)

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        body = dict(params) if params is not None else None
        await self.emit(SessionMessage(types.JSONRPCNotification(jsonrpc="2.0", method=method, params=body)))

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        if self.progress_token is not None:
            await self.notify("notifications/progress", progress_params(self.progress_token, progress, total, message))


def _refusal(request: types.JSONRPCRequest) -> types.ErrorData | None:
    """The envelope's verdict: None when the request may run, else the error it gets (as a session would)."""
    if request.method == "initialize":  # no handshake at 2026-07-28, whatever the envelope says
        return types.ErrorData(
            code=types.UNSUPPORTED_PROTOCOL_VERSION,
            message="a call serves the 2026-07-28 protocol; the initialize handshake is not accepted",
            data={"supported": list(MODERN_PROTOCOL_VERSIONS)},
        )
    verdict = classify_inbound_request(request.model_dump(by_alias=True, exclude_unset=True))
    if isinstance(verdict, InboundLadderRejection):
        return types.ErrorData(code=verdict.code, message=verdict.message, data=verdict.data)
    return None


async def answer(
    server: Server[Any], lifespan_state: Any, request: types.JSONRPCRequest, emit: Emit
) -> types.JSONRPCResponse | types.JSONRPCError:
    """Serve ``request``; its notifications go to ``emit`` as they happen, its reply is returned."""
    error = _refusal(request)
    if error is not None:
        return types.JSONRPCError(jsonrpc="2.0", id=request.id, error=error)
    meta = (request.params or {}).get("_meta") or {}
    dctx = _OneRequest(emit, request.id, progress_token_from_params(request.params))
    connection = Connection.from_envelope(  # its own notifications ride this call too, as on a session's pipe
        meta[types.PROTOCOL_VERSION_META_KEY],
        meta.get(types.CLIENT_INFO_META_KEY),
        meta.get(types.CLIENT_CAPABILITIES_META_KEY),
        outbound=NotifyOnlyOutbound(dctx),
    )
    try:
        result = await serve_one(
            server, dctx, request.method, request.params, connection=connection, lifespan_state=lifespan_state
        )
    except Exception as exc:  # the SDK's ladder: MCPError, ValidationError, else a generic internal error
        return types.JSONRPCError(jsonrpc="2.0", id=request.id, error=modern_error_data(exc))
    return types.JSONRPCResponse(jsonrpc="2.0", id=request.id, result=result)
