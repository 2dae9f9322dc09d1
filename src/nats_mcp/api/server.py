"""The MCP server object: the tool list and the one dispatch path every tool call takes, on the low-level SDK Server.

The low-level ``Server`` is used rather than ``MCPServer``: building-blocks.md measured it ~3x cheaper
per call, and our tools bring their own schemas (pydantic models) and results (text +
structuredContent), which is exactly what the low-level handlers take.
"""

from __future__ import annotations

import json
import logging
import warnings
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import mcp_types as types
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.lowlevel.server import lifespan as default_lifespan
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from nats_mcp import __version__
from nats_mcp.api import about, resend
from nats_mcp.api.assist import Assist
from nats_mcp.api.fixtures import Fixtures, fixture_handlers, load_fixtures
from nats_mcp.api.resources import LISTEN_TOOL, ResourceSurface
from nats_mcp.api.schema import input_schema, output_schema
from nats_mcp.api.tools.base import ERROR_META, OpsSpec, Rendered, ToolSpec, error_text, run_rendered, run_tool
from nats_mcp.api.tools.coordination import TOOLS, needs_of
from nats_mcp.api.tools.natsops import OPS_TOOLS
from nats_mcp.config.security import SecuritySettings
from nats_mcp.coord import capscope
from nats_mcp.coord.context import Caller
from nats_mcp.coord.replay import CallRecords, fingerprint
from nats_mcp.coord.service import Coordinator
from nats_mcp.core.redact import redact
from nats_mcp.observe import tracing
from nats_mcp.security.guard import CallContext, Guard, Pool, Refused
from nats_mcp.security.identity import local_principal
from nats_mcp.security.needs import Needs, reads_capabilities, reads_channels, reads_reservations, uses_queues
from nats_mcp.security.policy import NatsScope
from nats_mcp.security.principal import Principal

log = logging.getLogger("nats_mcp.api")
T = TypeVar("T")

INSTRUCTIONS = (
    "nats-mcp lets AI agents coordinate through NATS JetStream: channels (shared history), an agent "
    "registry with presence, direct messages, and capability work queues with leases and a dead-letter "
    "queue. Set a handle, register (with your capabilities), then discover agents, post to channels, send "
    "direct messages, broadcast and claim work. A failed call is a result with isError whose text reads "
    "'Error: [code] message' (the stable code also in _meta[\"io.nats-mcp/error\"].code); "
    "nats_unavailable means NATS is unreachable right now and the call can be retried."
)

CallerProvider = Callable[[], Awaitable[Caller]]
PrincipalProvider = Callable[[], Principal]
"""Who is calling: the request's principal (set in the request's context by the transport's authentication), or
the local principal (stdio)."""


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
    return Security(guard, lambda: me, "stdio", namespace)


def outcome_of(result: types.CallToolResult) -> str:
    """What the audit log records of a call: ok, or the error code."""
    if not result.is_error:
        return "ok"
    error = (result.meta or {}).get(ERROR_META)
    return str(error.get("code", "internal")) if isinstance(error, dict) else "internal"


def error_result(code: str, message: str, *, retry_after_s: float | None = None) -> types.CallToolResult:
    """A tool error as the contract says: isError, text 'Error: [code] message', the code in ``_meta``.

    No ``structuredContent`` (see :data:`ERROR_META`). A refusal for rate adds ``retryAfterS`` (seconds until a
    call would be admitted).
    """
    message = redact(message)
    error: dict[str, Any] = {"code": code, "message": message}
    if retry_after_s is not None:
        error["retryAfterS"] = round(retry_after_s, 3)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=error_text(code, message))],
        is_error=True,
        _meta={ERROR_META: error},
    )


def _nothing() -> None:
    return None


def refusal_data(refused: Refused) -> dict[str, Any]:
    """The ``data`` of a JSON-RPC error for a guard refusal (resource reads): its code, and when to retry."""
    data: dict[str, Any] = {"code": refused.code}
    if refused.retry_after_s is not None:
        data["retryAfterS"] = round(refused.retry_after_s, 3)
    return data


class ToolTable:
    """The tools under their configured names, their MCP descriptions, and the dispatch."""

    def __init__(self, prefix: str, ops: bool = False) -> None:
        self.by_name: dict[str, ToolSpec | OpsSpec] = {prefix + spec.suffix: spec for spec in TOOLS}
        if ops:  # the nats_* group: a fixed prefix (its suffixes carry it), only when enabled in settings
            self.by_name.update({spec.suffix: spec for spec in OPS_TOOLS})
        self.tools = [self._describe(name, spec) for name, spec in self.by_name.items()]
        self.suffix_of = {tool.name: self.by_name[tool.name].suffix for tool in self.tools}
        self._tool_of = {tool.name: tool for tool in self.tools}

    def input_schema(self, security: Security | None, name: str) -> dict[str, Any] | None:
        """The input schema of ``name`` if the caller may see it (None otherwise), without listing every tool.

        The SDK checks the ``Mcp-Param-*`` headers of each 2026-07-28 HTTP ``tools/call`` against it; without
        this lookup it ran the whole ``tools/list`` handler (and serialised the catalogue) on every such call.
        """
        tool = self._tool_of.get(name)
        if tool is None or (
            security is not None and not security.guard.visible(security.principal(), *self._needing(name))
        ):
            return None
        return tool.input_schema

    def visible(self, security: Security | None, principal: Principal | None) -> list[types.Tool]:
        """The tools a principal may call (all of them without a guard)."""
        if security is None or principal is None:
            return self.tools
        return [t for t in self.tools if security.guard.visible(principal, *self._needing(t.name))]

    def _needing(self, name: str) -> tuple[str, Needs]:
        """The suffix of ``name`` and the needs its tool declares (what the guard checks)."""
        return self.suffix_of[name], self.by_name[name].needs

    @staticmethod
    def _describe(name: str, spec: ToolSpec | OpsSpec) -> types.Tool:
        return types.Tool(
            name=name,
            title=spec.title,
            description=spec.description,
            input_schema=input_schema(spec.args),
            output_schema=output_schema(spec.out),
            annotations=types.ToolAnnotations(
                read_only_hint=spec.read_only,
                destructive_hint=spec.destructive,
                idempotent_hint=spec.idempotent,
                open_world_hint=False,
            ),
        )

    async def call(
        self,
        coordinator: Coordinator,
        caller: CallerProvider,
        name: str,
        arguments: dict[str, Any] | None,
        scope: NatsScope | None = None,
    ) -> types.CallToolResult:
        """Validate, run and render one call (:func:`run_tool`) as an MCP result."""
        spec = self.by_name.get(name)
        if spec is None:
            return error_result("not_found", f"unknown tool {name!r}; list the tools to see what exists")
        if isinstance(spec, OpsSpec):  # acts as no agent: the ops facade and the caller's NATS scope
            ops_spec = spec

            async def run_ops(args: Any) -> Rendered:
                return await ops_spec.handler(coordinator.ops, scope or NatsScope(), args)

            outcome = await run_rendered(name, spec.args, run_ops, arguments)
        else:
            outcome = await run_tool(spec, name, coordinator, caller, arguments)
        if outcome.error is not None:
            return error_result(*outcome.error)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=outcome.text)],
            structured_content=outcome.structured,
            is_error=False,
        )


class _Server(Server[Any]):
    """The SDK's ``Server`` with a cheaper ``serverInfo`` stamp (on every 2026-07-28 result).

    The SDK hands each result a ``copy.deepcopy`` of its identity dump; ours carries an icon (a data URI in
    nested dicts and lists), which made that copy ~5 % of a tool call. Parsing the dump's JSON text gives the
    same fresh, unaliased dict for a fraction of the cost.
    """

    @cached_property
    def _stamp_text(self) -> str:
        return self.server_info.model_dump_json(by_alias=True, exclude_none=True)

    @property
    def server_info_stamp(self) -> dict[str, Any]:
        stamp: dict[str, Any] = json.loads(self._stamp_text)
        return stamp


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
    ops = coordinator is not None and security is not None and coordinator.settings.nats_ops.enabled
    table = ToolTable(prefix, ops=ops)
    # A resend of a session's request (same id) answers the first outcome instead of running again (api/resend.py).
    calls = CallRecords(coordinator.conn, coordinator.layout) if coordinator is not None else None
    codec = resend.ResultCodec(error_result, outcome_of)
    # Prompts, completions, log notifications and claim progress (assist.py), through the same guard.
    assist = Assist(
        prefix,
        coordinator,
        caller,
        security.guard if security is not None else None,
        (lambda: CallContext(security.principal(), security.transport, security.namespace))
        if security is not None
        else None,
    )
    if coordinator is not None:
        coordinator.conn.add_listener(assist.on_nats_event)
    # A test run's fixture tools, prompts and resources (mcp/fixtures.py): None unless loaded from a checkout's tests/.
    fixtures = load_fixtures()
    fixture_tools = {tool.name: tool for tool in fixtures.tools} if fixtures is not None else {}
    fixture_prompts = {prompt.name: prompt for prompt in fixtures.prompts} if fixtures is not None else {}

    def may_see(name: str) -> bool:
        return security is None or security.guard.visible(security.principal(), name, ())

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        if params is not None and params.cursor is not None:  # one page, so no cursor is ours: say so, not page 1
            raise MCPError(
                types.INVALID_PARAMS, "invalid cursor: tools/list has a single page", {"code": "invalid_cursor"}
            )
        principal = security.principal() if security is not None else None
        extra = [tool for name, tool in fixture_tools.items() if may_see(name)]
        return types.ListToolsResult(tools=[*table.visible(security, principal), *extra])

    async def call_fixture(
        ctx: ServerRequestContext[Any], fixtures: Fixtures, name: str, arguments: dict[str, Any]
    ) -> types.CallToolResult:
        async def run() -> types.CallToolResult:
            return await fixtures.call_tool(ctx, name, arguments)

        if security is None:
            return await run()
        call = CallContext(security.principal(), security.transport, security.namespace)
        try:
            return await security.guard.call(call, name, arguments, run, outcome_of, needs=())
        except Refused as refused:
            return error_result(refused.code, refused.message, retry_after_s=refused.retry_after_s)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        name, arguments = params.name, params.arguments
        if fixtures is not None and name in fixture_tools:
            return await call_fixture(ctx, fixtures, name, dict(arguments or {}))
        if name not in table.by_name:  # a protocol error (the spec's "unknown tool"), not a tool's own failure
            if security is not None:  # limited and audited all the same (probing costs rate, leaves a trail)
                try:
                    security.guard.admit(
                        CallContext(security.principal(), security.transport, security.namespace),
                        name,
                        arguments,
                        "unknown_tool",
                    )
                except Refused as refused:
                    raise MCPError(types.INVALID_PARAMS, refused.message, refusal_data(refused)) from None
            shown = name if len(name) <= 80 else name[:80] + "..."
            raise MCPError(
                types.INVALID_PARAMS,
                f"Unknown tool: {shown!r}; list the tools to see what exists",
                {"code": "not_found"},
            )
        if coordinator is None or caller is None:
            return error_result("internal", "this server has no coordination services")
        if security is None:
            async with assist.progress(ctx, table.suffix_of[name], arguments):
                return await table.call(coordinator, caller, name, arguments)
        call = CallContext(security.principal(), security.transport, security.namespace)
        scope = security.guard.policy.nats_scope(call.principal) if name.startswith("nats_") else None
        suffix, needs = table.suffix_of[name], table.by_name[name].needs
        # Queue reads without a capability (channel status without a channel) show only what the policy grants.
        policy = security.guard.policy
        readable = policy.capability_reader(call.principal) if reads_capabilities(needs) else None
        channels = policy.channel_reader(call.principal) if reads_channels(needs) else None
        reserved = policy.reservation_reader(call.principal) if reads_reservations(needs) else None
        bounds = policy.boundary_reader(call.principal) if uses_queues(needs) else None  # work items' boundaries

        async def run() -> types.CallToolResult:
            with capscope.Scope(readable, bounds, channels, reserved):
                if not assist.reports_progress(ctx, suffix, arguments):
                    return await table.call(coordinator, caller, name, arguments, scope)
                async with assist.progress(ctx, suffix, arguments):
                    return await table.call(coordinator, caller, name, arguments, scope)

        token = resend.token_of(ctx, call.principal) if resend.deduplicated(table.by_name[name]) else None

        async def once() -> types.CallToolResult:  # inside the guard: a refused call leaves no record
            if calls is None or token is None:
                return await run()
            return await calls.run(token, fingerprint(suffix, arguments), run, codec)

        async def guarded() -> types.CallToolResult:
            try:
                result = await security.guard.call(call, suffix, arguments, once, outcome_of, needs=needs)
            except Refused as refused:
                return error_result(refused.code, refused.message, retry_after_s=refused.retry_after_s)
            await assist.after_call(ctx)
            return result

        if tracing.enabled():  # a span continuing the caller's trace (_meta.traceparent)
            return await tracing.traced_call(
                table.suffix_of[name], call.transport, call.principal.subject, params.meta, guarded, outcome_of
            )
        return await guarded()

    async def gate(
        ctx: ServerRequestContext[Any], tool: str, args: dict[str, Any], run: Callable[[], Awaitable[T]]
    ) -> T:
        if security is None:
            return await run()
        call = CallContext(security.principal(), security.transport, security.namespace)
        needs = needs_of(tool)
        # The reservations resource shows what the list tool would: reservations of paths the caller may reserve.
        reserved = security.guard.policy.reservation_reader(call.principal) if reads_reservations(needs) else None

        async def scoped() -> T:
            with capscope.reservations_limited_to(reserved):
                return await run()

        try:
            return await security.guard.call(call, tool, args, scoped, lambda _result: "ok", needs=needs)
        except Refused as refused:
            raise MCPError(types.INVALID_PARAMS, refused.message, refusal_data(refused)) from None

    def slot(ctx: ServerRequestContext[Any], pool: Pool, tool: str | None) -> Callable[[], None]:
        if security is None:
            return _nothing
        call = CallContext(security.principal(), security.transport, security.namespace)
        try:
            if tool is None:  # a listen naming no resource: nothing to authorize, limited and audited all the same
                security.guard.admit(call, LISTEN_TOOL, {}, "ok")
            return security.guard.acquire(call, pool, tool or LISTEN_TOOL)
        except Refused as refused:
            raise MCPError(types.INVALID_PARAMS, refused.message, refusal_data(refused)) from None

    # Resources (channel history, inbox peek) and their change notifications: only with coordination services.
    resources = (
        ResourceSurface(coordinator, caller, prefix, gate=gate, slot=slot)
        if coordinator is not None and caller is not None
        else None
    )

    handlers: dict[str, Any] = {
        "on_list_prompts": assist.list_prompts,
        "on_get_prompt": assist.get_prompt,
        "on_completion": assist.complete,
    }
    if resources is not None:
        handlers.update(
            on_list_resources=resources.list_resources,
            on_list_resource_templates=resources.list_templates,
            on_read_resource=resources.read_resource,
            on_subscribe_resource=resources.subscribe,
            on_unsubscribe_resource=resources.unsubscribe,
        )
    if fixtures is not None:
        handlers.update(fixture_handlers(fixtures, fixture_prompts, handlers, gate, may_see))

    def input_schema_of(name: str) -> dict[str, Any] | None:
        if name in fixture_tools:
            return fixture_tools[name].input_schema if may_see(name) else None
        return table.input_schema(security, name)

    with warnings.catch_warnings():  # logging/setLevel is deprecated in 2026-07-28 but still part of 2025-11-25
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        server = _Server(
            about.NAME,
            version=__version__,
            title=about.TITLE,
            description=about.DESCRIPTION,
            website_url=about.WEBSITE_URL,
            icons=about.ICONS,
            instructions=INSTRUCTIONS,
            lifespan=resources.lifespan if resources is not None else default_lifespan,
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            get_tool_input_schema=input_schema_of,
            on_subscriptions_listen=resources.listen if resources is not None else None,
            on_set_logging_level=assist.set_level,
            **handlers,
        )
    if not tracing.enabled():
        # The SDK's span middleware wraps every request (a span, attributes, a context extraction) even with no
        # tracer installed: ~10 % of an echo call. Tracing is set up before the server is built (observe/), so
        # off here means off for the process.
        server.middleware = [m for m in server.middleware if not isinstance(m, OpenTelemetryMiddleware)]
    _ASSISTS[server] = assist
    return server


_ASSISTS: weakref.WeakKeyDictionary[Server[Any], Assist] = weakref.WeakKeyDictionary()


def assist_of(server: Server[Any]) -> Assist | None:
    """The log levels and notifications of a server :func:`build_server` made (a transport whose sessions outlive
    one process connects them to its session records)."""
    return _ASSISTS.get(server)
