"""The MCP server object: the tool list and the one dispatch path every tool call takes, on the low-level SDK Server.

The low-level ``Server`` is used rather than ``MCPServer``: building-blocks.md measured it ~3x cheaper
per call, and our tools bring their own schemas (pydantic models) and results (text +
structuredContent), which is exactly what the low-level handlers take.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.lowlevel.server import lifespan as default_lifespan
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from pydantic import ValidationError

from nats_mcp import __version__
from nats_mcp.bus.errors import BusError, translate
from nats_mcp.config_security import SecuritySettings
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import CoordError
from nats_mcp.coord.service import Coordinator
from nats_mcp.mcp.resources import ResourceSurface
from nats_mcp.mcp.toolbase import ToolSpec
from nats_mcp.mcp.tools import TOOLS
from nats_mcp.names import InvalidNameError
from nats_mcp.observe import tracing
from nats_mcp.redact import redact
from nats_mcp.security.guard import CallContext, Guard, Refused
from nats_mcp.security.principal import Principal

log = logging.getLogger("nats_mcp.mcp")
T = TypeVar("T")

INSTRUCTIONS = (
    "nats-mcp lets AI agents coordinate through NATS JetStream: channels (shared history), an agent "
    "registry with presence, direct messages, and capability work queues with leases and a dead-letter "
    "queue. Set a handle, register (with your capabilities), then discover agents, post to channels, send "
    "direct messages, broadcast and claim work. Errors carry a stable code in structuredContent.error.code; "
    "nats_unavailable means NATS is unreachable right now and the call can be retried."
)

CallerProvider = Callable[[], Awaitable[Caller]]
PrincipalProvider = Callable[[ServerRequestContext[Any]], Principal]
"""Who is calling, from the request (a transport's authentication), or the local principal (stdio)."""


@dataclass(frozen=True)
class Security:
    """The guard every call goes through, and how to learn who calls."""

    guard: Guard
    principal: PrincipalProvider
    transport: str
    namespace: str


def local_security(guard: Guard, settings: SecuritySettings, namespace: str) -> Security:
    """Stdio: every call is the local principal's (the user who started the process)."""
    me = local_principal(settings)
    return Security(guard, lambda _ctx: me, "stdio", namespace)


def local_principal(settings: SecuritySettings) -> Principal:
    return Principal(subject=settings.local.subject, issuer="local", method="local",
                     roles=frozenset(settings.local.roles))  # fmt: skip


def outcome_of(result: types.CallToolResult) -> str:
    """What the audit log records of a call: ok, or the error code."""
    if not result.is_error:
        return "ok"
    error = (result.structured_content or {}).get("error")
    return str(error.get("code", "internal")) if isinstance(error, dict) else "internal"


def error_result(code: str, message: str) -> types.CallToolResult:
    """A tool error as the contract says: isError, text starting 'Error: ', structuredContent.error."""
    message = redact(message)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"Error: {message}")],
        structured_content={"error": {"code": code, "message": message}},
        is_error=True,
    )


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return "invalid arguments: " + "; ".join(parts)


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every local ``$ref`` replaced by its definition (ours are never recursive).

    Clients validate each result against the output schema; resolving a ``$ref`` per list item made
    that the largest cost of reading a channel page on the client side, and some clients do not
    resolve ``$ref`` at all.
    """
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                merged = {
                    **walk(defs[ref.removeprefix("#/$defs/")]),
                    **{k: walk(v) for k, v in node.items() if k != "$ref"},
                }
                return merged
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result


class ToolTable:
    """The tools under their configured names, their MCP descriptions, and the dispatch."""

    def __init__(self, prefix: str) -> None:
        self.by_name: dict[str, ToolSpec] = {prefix + spec.suffix: spec for spec in TOOLS}
        self.tools = [self._describe(name, spec) for name, spec in self.by_name.items()]
        self.suffix_of = {tool.name: self.by_name[tool.name].suffix for tool in self.tools}

    def visible(self, security: Security | None, principal: Principal | None) -> list[types.Tool]:
        """The tools a principal may call (all of them without a guard)."""
        if security is None or principal is None:
            return self.tools
        return [t for t in self.tools if security.guard.visible(principal, self.suffix_of[t.name])]

    @staticmethod
    def _describe(name: str, spec: ToolSpec) -> types.Tool:
        return types.Tool(
            name=name,
            description=spec.description,
            input_schema=inline_refs(spec.args.model_json_schema()),
            output_schema=inline_refs(spec.out.model_json_schema()),
            annotations=types.ToolAnnotations(
                read_only_hint=spec.read_only,
                destructive_hint=spec.destructive,
                idempotent_hint=spec.idempotent,
                open_world_hint=False,
            ),
        )

    async def call(
        self, coordinator: Coordinator, caller: CallerProvider, name: str, arguments: dict[str, Any] | None
    ) -> types.CallToolResult:
        """Validate, run and render one call; every failure becomes a contract error, never a crash."""
        spec = self.by_name.get(name)
        if spec is None:
            return error_result("not_found", f"unknown tool {name!r}; list the tools to see what exists")
        try:
            args = spec.args.model_validate(arguments or {})
            out, text = await spec.handler(coordinator, await caller(), args)
        except ValidationError as exc:
            return error_result("invalid_argument", _validation_message(exc))
        except (CoordError, BusError) as exc:
            return error_result(exc.code, exc.message)
        except InvalidNameError as exc:
            return error_result("invalid_name", str(exc))
        except Exception as exc:
            known = translate(exc)
            if known is not None:
                return error_result(known.code, str(known))
            log.exception("tool %s failed", name)
            return error_result("internal", "the server failed to complete this call; it has been logged")
        structured = out.model_dump(mode="json")
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)],
            structured_content=structured,
            is_error=False,
        )


def build_server(
    coordinator: Coordinator | None = None,
    caller: CallerProvider | None = None,
    prefix: str = "warp_",
    security: Security | None = None,
) -> Server[Any]:
    """The server with every tool; without a coordinator (tests of the bare surface) calls answer an error.

    With ``security`` every call goes through its guard (DESIGN.md decision 3) and ``tools/list`` shows a
    caller only what the policy lets it call.
    """
    table = ToolTable(prefix)

    async def list_tools(
        ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        principal = security.principal(ctx) if security is not None else None
        return types.ListToolsResult(tools=table.visible(security, principal))

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        if coordinator is None or caller is None:
            return error_result("internal", "this server has no coordination services")
        name, arguments = params.name, params.arguments
        if security is None or name not in table.by_name:
            return await table.call(coordinator, caller, name, arguments)
        call = CallContext(security.principal(ctx), security.transport, security.namespace)

        async def guarded() -> types.CallToolResult:
            try:
                return await security.guard.call(
                    call, table.suffix_of[name], arguments, lambda: table.call(coordinator, caller, name, arguments),
                    outcome_of,
                )  # fmt: skip
            except Refused as refused:
                return error_result(refused.code, refused.message)

        if tracing.enabled():  # a span continuing the caller's trace (_meta.traceparent)
            return await tracing.traced_call(table.suffix_of[name], call.transport, call.principal.subject,
                                             params.meta, guarded, outcome_of)  # fmt: skip
        return await guarded()

    async def gate(
        ctx: ServerRequestContext[Any], tool: str, args: dict[str, Any], run: Callable[[], Awaitable[T]]
    ) -> T:
        if security is None:
            return await run()
        call = CallContext(security.principal(ctx), security.transport, security.namespace)
        try:
            return await security.guard.call(call, tool, args, run, lambda _result: "ok")
        except Refused as refused:
            raise MCPError(types.INVALID_PARAMS, refused.message, {"code": refused.code}) from None

    # Resources (channel history, inbox peek) and their change notifications: only with coordination services.
    resources = (
        ResourceSurface(coordinator, caller, prefix, gate=gate)
        if coordinator is not None and caller is not None
        else None
    )

    async def list_prompts(
        _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[])  # no prompts (yet); an empty list, not "method not found"

    async def set_logging_level(
        _ctx: ServerRequestContext[Any], _params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        # Accepted for 2025-11-25 clients; this server sends no log notifications (logs go to the operator's
        # stderr, at the level of logging.level), and one client must not change another's logging.
        return types.EmptyResult()

    with warnings.catch_warnings():  # logging/setLevel is deprecated in 2026-07-28 but still part of 2025-11-25
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        return Server(
            "nats-mcp",
            version=__version__,
            instructions=INSTRUCTIONS,
            lifespan=resources.lifespan if resources is not None else default_lifespan,
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            on_list_resources=resources.list_resources if resources is not None else None,
            on_list_resource_templates=resources.list_templates if resources is not None else None,
            on_read_resource=resources.read_resource if resources is not None else None,
            on_subscribe_resource=resources.subscribe if resources is not None else None,
            on_unsubscribe_resource=resources.unsubscribe if resources is not None else None,
            on_subscriptions_listen=resources.listen if resources is not None else None,
            on_list_prompts=list_prompts,
            on_set_logging_level=set_logging_level,
        )
