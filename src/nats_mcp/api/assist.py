"""The MCP helper surface: prompts, completions, log notifications and claim progress, each through the guard.

- ``prompts/list`` shows a caller the prompts of :mod:`nats_mcp.api.prompts` whose tools it may all call (limited
  and audited as ``prompts_list``); ``prompts/get`` is limited, authorized (the same rule) and audited as
  ``prompts_get``. ``logging/setLevel`` is limited and audited as ``logging_set_level``.
- ``completion/complete`` (audited as ``completion_complete``) completes the ``{channel}`` of the channel resource
  template (channels the caller may read) and prompt arguments: capabilities whose queue the caller may read,
  handles of agents it can discover, channels it may read. A caller never gets a value it could not use.
- ``notifications/message``: a 2025-11-25 connection that sent ``logging/setLevel`` hears, at that level and above,
  that NATS was lost (warning) and is back (info), and that its rate limit is close (warning, under
  :data:`RATE_WARN_SHARE` of the burst left; on the call's own stream). A 2026-07-28 request that opts in with
  ``_meta["io.modelcontextprotocol/logLevel"]`` gets the rate warning on its stream; that revision has no
  connection-wide log channel, so it cannot hear of NATS coming and going this way.
- ``notifications/progress`` every :data:`PROGRESS_INTERVAL_S` while a claim waits for work, when the request
  carries a progressToken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, get_args

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from nats_mcp.api.prompts import BY_NAME, PROMPTS, ArgSpec, PromptSpec
from nats_mcp.api.resource_feeds import connection_of
from nats_mcp.api.resource_uris import CHANNEL_TEMPLATE
from nats_mcp.api.tools.coordination import needs_of
from nats_mcp.coord.context import Caller
from nats_mcp.coord.registry.service import MAX_DISCOVER_LIMIT
from nats_mcp.coord.service import Coordinator
from nats_mcp.core.aiotasks import stop_task
from nats_mcp.security.guard import CallContext, Guard, Refused
from nats_mcp.security.needs import waits

log = logging.getLogger("nats_mcp.api.assist")

LEVELS: tuple[types.LoggingLevel, ...] = get_args(types.LoggingLevel)
"""Severity-ascending (RFC 5424 order, as the SDK's literal declares them)."""
LOGGER = "nats-mcp"
RATE_WARN_SHARE = 0.2
RATE_WARN_EVERY_S = 5.0
"""At most one rate warning per connection this often: a caller near its limit makes many calls."""
PROGRESS_INTERVAL_S = 1.0
PROGRESS_FIRST_S = 0.25
"""The first report comes soon (a claim that found work at once, within this, reports nothing), so a client sees a
waiting claim as such well before its timeout, however short."""
SEND_TIMEOUT_S = 5.0
MAX_COMPLETIONS = 100
"""The spec's cap on ``values`` in one completion."""
MAX_NAME_ARG = 64
MAX_TEXT_ARG = 4000
_PROCESS = object()

CallerProvider = Callable[[], Awaitable[Caller]]


def _refusal(refused: Refused) -> MCPError:
    data: dict[str, Any] = {"code": refused.code}
    if refused.retry_after_s is not None:
        data["retryAfterS"] = round(refused.retry_after_s, 3)
    return MCPError(types.INVALID_PARAMS, refused.message, data)


def _invalid(message: str, code: str = "invalid_argument") -> MCPError:
    return MCPError(types.INVALID_PARAMS, message, {"code": code})


def _check_args(spec: PromptSpec, given: Mapping[str, str]) -> dict[str, str]:
    """The arguments of a ``prompts/get``: known, required ones present, names free of quotes and spaces (they are
    written into the tool calls the prompt shows)."""
    known = {a.name: a for a in spec.args}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise _invalid(f"prompt {spec.name} has no argument {unknown[0][:64]!r}; it takes {', '.join(known)}")
    out: dict[str, str] = {}
    for arg in spec.args:
        value = given.get(arg.name)
        if value is None or value == "":
            if arg.required:
                raise _invalid(f"prompt {spec.name} needs the argument {arg.name!r}: {arg.description}")
            continue
        out[arg.name] = _checked(arg, value)
    return out


def _checked(arg: ArgSpec, value: str) -> str:
    if arg.kind == "text":
        if len(value) > MAX_TEXT_ARG:
            raise _invalid(f"{arg.name} is longer than {MAX_TEXT_ARG} characters")
        return value
    if arg.kind == "number":
        if not value.isdigit() or len(value) > 9:
            raise _invalid(f"{arg.name} must be a whole number of milliseconds")
        return value
    if len(value) > (MAX_TEXT_ARG if arg.kind == "capability" else MAX_NAME_ARG) or not all(
        ch.isprintable() and not ch.isspace() and ch not in "\"'\\`" for ch in value.replace(", ", ",")
    ):
        raise _invalid(f"{arg.name} must be a name: printable, no spaces or quotes")
    return value


class Assist:
    """Prompts, completions, log levels and notifications, progress: the handlers of one server."""

    def __init__(
        self,
        prefix: str,
        coordinator: Coordinator | None,
        caller: CallerProvider | None,
        guard: Guard | None,
        call_context: Callable[[], CallContext] | None,
    ) -> None:
        self._prefix = prefix
        self._coordinator = coordinator
        self._caller = caller
        self._guard = guard
        self._call_context = call_context
        self._levels: dict[object, tuple[types.LoggingLevel, Any]] = {}
        self._rate_warned: dict[object, float] = {}
        self._nats_lost = False
        self._last_post: asyncio.Task[None] | None = None
        self.level_sink: Callable[[str, str], Awaitable[None]] | None = None
        """Set by a transport whose sessions outlive one process: records (session id, level) for the others."""

    # -- the guard -------------------------------------------------------------------------------

    def _may_use(self, spec: PromptSpec) -> bool:
        if self._guard is None or self._call_context is None:
            return True
        principal = self._call_context().principal
        return all(self._guard.visible(principal, tool, needs_of(tool)) for tool in spec.tools)

    def _admit(self, name: str, args: Mapping[str, Any], tools: Iterable[str]) -> None:
        if self._guard is None or self._call_context is None:
            return
        try:
            self._guard.admit_uses(self._call_context(), name, args, [(tool, needs_of(tool)) for tool in tools])
        except Refused as refused:
            raise _refusal(refused) from None

    def _admit_unknown(self, name: str, args: Mapping[str, Any], outcome: str = "not_found") -> None:
        """A request that authorizes nothing (names nothing that exists, or lists): limited and audited all the
        same, so probing and listing leave a trail."""
        if self._guard is None or self._call_context is None:
            return
        try:
            self._guard.admit(self._call_context(), name, args, outcome)
        except Refused as refused:
            raise _refusal(refused) from None

    # -- prompts ---------------------------------------------------------------------------------

    async def list_prompts(
        self, _ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        if params is not None and params.cursor is not None:
            raise _invalid("invalid cursor: prompts/list has a single page", "invalid_cursor")
        self._admit_unknown("prompts_list", {}, "ok")
        return types.ListPromptsResult(prompts=[spec.describe() for spec in PROMPTS if self._may_use(spec)])

    async def get_prompt(
        self, _ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        given = dict(params.arguments or {})
        audited = {"name": params.name[:128], "arguments": given}
        spec = BY_NAME.get(params.name)
        if spec is None:
            self._admit_unknown("prompts_get", audited)
            raise _invalid(f"unknown prompt {params.name[:80]!r}; list the prompts to see what exists", "not_found")
        self._admit("prompts_get", audited, spec.tools)
        args = _check_args(spec, given)
        text = spec.render(self._prefix, args)
        return types.GetPromptResult(
            description=spec.description,
            messages=[types.PromptMessage(role="user", content=types.TextContent(type="text", text=text))],
        )

    # -- completions -----------------------------------------------------------------------------

    async def complete(
        self, _ctx: ServerRequestContext[Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        ref, argument = params.ref, params.argument
        if isinstance(ref, types.PromptReference):
            audited = {"ref": f"prompt:{ref.name[:100]}", "argument": argument.name[:64]}
            spec = BY_NAME.get(ref.name)
            if spec is None:
                self._admit_unknown("completion_complete", audited)
                raise _invalid(f"unknown prompt {ref.name[:80]!r}", "not_found")
            self._admit("completion_complete", audited, spec.tools)
            arg = next((a for a in spec.args if a.name == argument.name), None)
            kind = arg.kind if arg is not None else "text"
        else:
            audited = {"ref": ref.uri[:200], "argument": argument.name[:64]}
            if ref.uri != CHANNEL_TEMPLATE:
                self._admit_unknown("completion_complete", audited)
                raise _invalid(
                    f"no resource template {ref.uri[:80]!r}; the one template is {CHANNEL_TEMPLATE}", "not_found"
                )
            self._admit("completion_complete", audited, ("channels_read",))
            kind = "channel" if argument.name == "channel" else "text"
        value = argument.value
        if kind == "capability" and "," in value:  # a comma-separated list: complete its last item
            head, _, value = value.rpartition(",")
            found = [f"{head},{v}" for v in await self._values(kind, value.strip())]
        else:
            found = await self._values(kind, value)
        return types.CompleteResult(
            completion=types.Completion(
                values=found[:MAX_COMPLETIONS], total=len(found), has_more=len(found) > MAX_COMPLETIONS
            )
        )

    async def _values(self, kind: str, prefix: str) -> list[str]:
        if kind == "channel":
            names = self._readable_channels()
        elif kind == "capability":
            names = await self._capabilities()
        elif kind == "agent_handle":
            names = [h for h, _ in await self._agents()]
        elif kind == "handle":
            names = await self._own_handle()
        else:
            return []
        low = prefix.lower()
        return sorted({n for n in names if n.lower().startswith(low)})

    def _principal_decides(self, tool: str, args: Mapping[str, Any]) -> bool:
        if self._guard is None or self._call_context is None:
            return True
        call = self._call_context()
        return self._guard.policy.decide(call.principal, tool, call.namespace, args, needs_of(tool)).allowed

    def _readable_channels(self) -> list[str]:
        if self._coordinator is None:
            return []
        return [
            c.name
            for c in self._coordinator.channels.list()
            if self._principal_decides("channels_read", {"channel": c.name})
        ]

    async def _agents(self) -> list[tuple[str, list[str]]]:
        """(handle, capabilities) of the agents the caller can discover (none if it may not discover)."""
        if self._coordinator is None or self._caller is None or not self._principal_decides("registry_discover", {}):
            return []
        try:
            page = await self._coordinator.registry.discover(await self._caller(), limit=MAX_DISCOVER_LIMIT)
        except Exception as exc:  # NATS away, not registered, ...: no suggestions rather than a failed completion
            log.debug("completion: no agents: %s", exc)
            return []
        return [(a.handle, list(a.capabilities)) for a in page.agents]

    async def _capabilities(self) -> list[str]:
        """Capabilities of discoverable agents and the caller's own literal grants, whose queue it may read."""
        names = {c for _, caps in await self._agents() for c in caps}
        if self._guard is None or self._call_context is None:
            return sorted(names)
        principal = self._call_context().principal
        policy = self._guard.policy
        for role in policy.roles_of(principal):
            names.update(c for c in (*role.capabilities.claim, *role.capabilities.broadcast) if "*" not in c)
        return [c for c in names if policy.capability_readable(principal, c)]

    async def _own_handle(self) -> list[str]:
        if self._coordinator is None or self._caller is None:
            return []
        try:
            handle = await self._coordinator.get_handle(await self._caller())
        except Exception as exc:
            log.debug("completion: no handle: %s", exc)
            return []
        return [handle] if handle else []

    # -- log notifications -----------------------------------------------------------------------

    async def set_level(self, ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams) -> types.EmptyResult:
        """This connection hears notifications at ``params.level`` and above (other connections keep theirs)."""
        self._admit_unknown("logging_set_level", {"level": params.level}, "ok")
        connection = connection_of(ctx)
        key = connection if connection is not None else _PROCESS
        if key not in self._levels and connection is not None:
            connection.exit_stack.callback(self._forget, key)
        self._levels[key] = (params.level, ctx.session)
        session_id = getattr(connection, "session_id", None)
        if self.level_sink is not None and isinstance(session_id, str):
            await self.level_sink(session_id, params.level)
        return types.EmptyResult()

    def restore_level(self, connection: Any, level: str) -> None:
        """A session's connection restored on this process (or told of a change made elsewhere) hears ``level``."""
        if level not in LEVELS:
            return
        if connection not in self._levels:
            connection.exit_stack.callback(self._forget, connection)
        self._levels[connection] = (level, _ConnectionLog(connection))

    def _forget(self, key: object) -> None:
        self._levels.pop(key, None)
        self._rate_warned.pop(key, None)

    async def on_nats_event(self, event: str, _data: dict[str, Any]) -> None:
        """Connection observer: tell the connections that listen that NATS went away and came back."""
        if event == "disconnected" and not self._nats_lost:
            self._nats_lost = True
            self._post(
                "warning",
                {
                    "event": "nats_disconnected",
                    "message": "NATS connection lost; calls answer nats_unavailable until it is back",
                },
            )
        elif event in ("connected", "reconnected") and self._nats_lost:
            self._nats_lost = False
            self._post("info", {"event": "nats_reconnected", "message": "NATS connection is back"})

    def _post(self, level: types.LoggingLevel, data: dict[str, Any]) -> None:
        """Send in the background, in order: the NATS supervisor calling us must not wait on a slow client."""
        previous = self._last_post

        async def run() -> None:
            if previous is not None:
                await asyncio.wait({previous})
            for wanted, session in list(self._levels.values()):
                if LEVELS.index(level) >= LEVELS.index(wanted):
                    with contextlib.suppress(TimeoutError):  # a client not reading is skipped, not waited for
                        await asyncio.wait_for(_send_log(session, level, data, None), SEND_TIMEOUT_S)

        self._last_post = asyncio.get_running_loop().create_task(run(), name="log-notify")

    async def after_call(self, ctx: ServerRequestContext[Any]) -> None:
        """After a call admitted by the guard: warn its connection when little of its rate burst is left."""
        if self._guard is None or self._call_context is None:
            return
        left = self._guard.rate_left(self._call_context().principal)
        if left is None or left >= RATE_WARN_SHARE:
            return
        connection = connection_of(ctx)
        key = connection if connection is not None else _PROCESS
        modern = ctx.protocol_version >= "2026-07-28"  # the SDK applies the request's own opt-in
        if not modern:
            level = self._levels.get(key)
            if level is None or LEVELS.index(level[0]) > LEVELS.index("warning"):
                return
        now = time.monotonic()
        if now - self._rate_warned.get(key, -RATE_WARN_EVERY_S) < RATE_WARN_EVERY_S:
            return
        self._rate_warned[key] = now
        data = {
            "event": "rate_limit_near",
            "leftShare": round(left, 3),
            "message": f"rate limit close: {left:.0%} of the burst left; slow down or calls are refused "
            "with rate_limited",
        }
        await _send_log(ctx.session, "warning", data, ctx.request_id)

    # -- progress --------------------------------------------------------------------------------

    @staticmethod
    def reports_progress(ctx: ServerRequestContext[Any], tool: str, arguments: Mapping[str, Any] | None) -> bool:
        """Whether a call of ``tool`` reports progress while it runs (:meth:`progress` does something): a waiting
        claim whose client asked for progress; the server enters :meth:`progress` only then."""
        wait = waits(needs_of(tool))
        if wait is None or wait.pool != "claim_waits":  # a waiting read answers without progress reports
            return False
        meta: Mapping[str, Any] = ctx.meta or {}
        if meta.get("progress_token", meta.get("progressToken")) is None:  # the SDK validates _meta: its field name
            return False
        timeout = (arguments or {}).get(wait.arg, wait.default_ms)
        return isinstance(timeout, int) and timeout > 0

    @contextlib.asynccontextmanager
    async def progress(
        self, ctx: ServerRequestContext[Any], tool: str, arguments: Mapping[str, Any] | None
    ) -> AsyncIterator[None]:
        """While the block runs (a waiting claim), report progress every second if the client asked for it."""
        wait = waits(needs_of(tool))
        if wait is None or not self.reports_progress(ctx, tool, arguments):
            yield
            return
        args = arguments or {}
        timeout = args.get(wait.arg, wait.default_ms)
        capability = str(args.get("capability", "?"))[:64]
        total = timeout / 1000

        async def tick() -> None:
            started = time.monotonic()
            pause = PROGRESS_FIRST_S
            while True:
                await asyncio.sleep(pause)  # the pace of the notifications, not a synchronisation
                pause = PROGRESS_INTERVAL_S
                waited = min(time.monotonic() - started, total)
                try:
                    await ctx.session.report_progress(round(waited, 3), total, f"waiting for work on {capability}")
                except Exception as exc:  # the client went away; the claim ends on its own
                    log.debug("progress not delivered: %s", exc)
                    return

        task = asyncio.get_running_loop().create_task(tick(), name="claim-progress")
        try:
            yield
        finally:
            await stop_task(task)


class _ConnectionLog:
    """A connection's standalone stream as :func:`_send_log` sends on it (what a request's session does there)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def send_log_message(
        self, level: types.LoggingLevel, data: Any, logger: str | None = None, related_request_id: Any = None
    ) -> None:
        params: dict[str, Any] = {"level": level, "data": data}
        if logger is not None:
            params["logger"] = logger
        await self.connection.notify("notifications/message", params)


async def _send_log(session: Any, level: types.LoggingLevel, data: Any, request_id: types.RequestId | None) -> None:
    try:
        with warnings.catch_warnings():  # notifications/message is deprecated in 2026-07-28, still 2025-11-25's
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await session.send_log_message(level, data, logger=LOGGER, related_request_id=request_id)
    except Exception as exc:  # the client went away
        log.debug("log notification not delivered: %s", exc)
