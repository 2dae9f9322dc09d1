"""The human CLI's session boundary: a person at a terminal acting through the same tools, guard and audit as agents.

The person is the local principal (``security.local``: its subject and roles from settings, the policy decides
what they may do) acting as the agent ``--as NAME`` (default ``human``): its GUID is derived from the principal
and that name, as for a gateway principal, so a human never impersonates an agent running in the same folder.
Every action is a tool call through :class:`~nats_mcp.security.guard.Guard` (authorization, limits, audit with
transport ``cli``) and the same tool code agents use, so results and errors are the tools' own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from nats_mcp.cli.common import EXIT_FAIL, EXIT_USAGE, err, fail, imported, load_policy, state

if TYPE_CHECKING:
    from nats_mcp.api.tools.base import ToolSpec
    from nats_mcp.config.settings import Settings
    from nats_mcp.coord.context import Caller
    from nats_mcp.coord.service import Coordinator
    from nats_mcp.security.guard import CallContext, Guard

T = TypeVar("T")

EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_DENIED = 5
EXIT_DEAD = 6
"""``work watch``: the item was dead-lettered."""
EXIT_TIMEOUT = 7
"""``work watch --timeout``: the item did not finish in time."""
_EXIT_OF = {
    "not_found": EXIT_NOT_FOUND,
    "nats_unavailable": EXIT_UNAVAILABLE,
    "forbidden": EXIT_DENIED,
    "rate_limited": EXIT_DENIED,
    "invalid_argument": EXIT_USAGE,
    "invalid_name": EXIT_USAGE,
}
DEFAULT_AGENT = "human"


class ToolFailed(Exception):
    """A tool answered an error: its contract code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def exit_code(code: str) -> int:
    """The exit status scripts can rely on for a tool error code (see the README's table)."""
    return _EXIT_OF.get(code, EXIT_FAIL)


def failed(exc: ToolFailed) -> NoReturn:
    fail(f"{exc.code}: {exc.message}", code=exit_code(exc.code))


FAMILIES = {
    "handle": ("handles", "HANDLE_TOOLS"),
    "channels": ("channels", "CHANNEL_TOOLS"),
    "registry": ("registry", "REGISTRY_TOOLS"),
    "messages": ("direct", "DIRECT_TOOLS"),
    "work": ("work", "WORK_TOOLS"),
    "dlq": ("dlq", "DLQ_TOOLS"),
    "reservations": ("reservations", "RESERVATION_TOOLS"),
}
"""A tool's family module under api/tools/ and its table there, by the first word of the tool's name."""


def tool_spec(suffix: str) -> ToolSpec:
    """The coordination tool named ``suffix`` (its name without prefix), from its family's module alone: the whole
    table (api/tools/coordination.py) imports every family and the NATS operations tools, ~30 ms that a command
    calling one or two tools does not need (issue 22). KeyError for a name that is no tool."""
    family = FAMILIES.get(suffix.split("_", 1)[0])
    if family is None:
        raise KeyError(suffix)
    module = imported(f"nats_mcp.api.tools.{family[0]}")
    table: tuple[ToolSpec, ...] = getattr(module, family[1])
    for spec in table:
        if spec.suffix == suffix:
            return spec
    raise KeyError(suffix)


@dataclass
class HumanSession:
    """The tools, as the local principal's agent ``NAME``, through the guard."""

    coordinator: Coordinator
    guard: Guard
    context: CallContext
    caller: Caller
    prefix: str

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """Run tool ``tool`` (its name without prefix); its structured result, or ToolFailed."""
        from nats_mcp.api.tools.base import ToolOutcome, run_tool
        from nats_mcp.security.guard import Refused

        args = {k: v for k, v in arguments.items() if v is not None}
        spec = tool_spec(tool)

        async def me() -> Caller:
            return self.caller

        async def run_it() -> ToolOutcome:
            return await run_tool(spec, self.prefix + tool, self.coordinator, me, args)

        try:
            outcome = await self.guard.call(
                self.context, tool, args, run_it, lambda o: "ok" if o.error is None else o.error[0], needs=spec.needs
            )
        except Refused as refused:
            raise ToolFailed(refused.code, refused.message) from None
        if outcome.error is not None:
            raise ToolFailed(*outcome.error)
        return outcome.structured

    async def query(self, what: str, arguments: dict[str, Any], run: Callable[[], Awaitable[T]]) -> T:
        """A read that no tool offers (``work watch``), authorized and audited like a tool named ``what``."""
        from nats_mcp.bus.errors import BusError
        from nats_mcp.coord.errors import CoordError
        from nats_mcp.core.names import InvalidNameError
        from nats_mcp.security.guard import Refused

        try:
            return await self.guard.call(self.context, what, arguments, run, lambda _r: "ok", needs=())
        except Refused as refused:
            raise ToolFailed(refused.code, refused.message) from None
        except (CoordError, BusError) as exc:
            raise ToolFailed(exc.code, exc.message) from None
        except InvalidNameError as exc:
            raise ToolFailed("invalid_name", str(exc)) from None

    async def ensure_handle(self) -> None:
        """Channel messages carry the sender's handle: the agent's name, unless it has one already."""
        if (await self.call("handle_get")).get("handle") is None:
            await self.call("handle_set", handle=self.caller_name)

    async def ensure_registered(self) -> None:
        """Offering work needs a registered sender: registered as agent type ``human`` (no capabilities), in
        scope ``private`` — a person at the CLI is not an agent others should discover, message or wait for,
        and a private entry is seen by no one but itself (``agents list`` leaves it out too)."""
        await self.ensure_handle()
        await self.call("registry_register", agentType="human", scope="private")

    @property
    def caller_name(self) -> str:
        return self.context.principal.agent or DEFAULT_AGENT


@contextlib.asynccontextmanager
async def human_session(settings: Settings, agent: str, timeout: float) -> AsyncIterator[HumanSession]:
    """Connect (the embedded server when no URL is set), assemble the stack a serve process has, yield a session."""
    from nats_mcp.coord.errors import NatsUnavailable
    from nats_mcp.runtime import Runtime
    from nats_mcp.security.binding import caller_for
    from nats_mcp.security.guard import CallContext, Refused
    from nats_mcp.security.principal import Principal

    policy = load_policy(settings.security.policy_file)
    local = settings.security.local
    principal = Principal(
        subject=local.subject, issuer="local", method="local", roles=frozenset(local.roles), agent=agent
    )
    namespace, project_id = settings.resolved_namespace, settings.resolved_project_id
    try:
        caller = caller_for(principal, policy, namespace, project_id)
    except Refused as refused:
        fail(refused.message, code=EXIT_DENIED)
    logging.getLogger("nats_mcp.bus").setLevel(logging.ERROR)  # the error below says it once
    # No observability: a command's few calls are audited (transport cli), not measured.
    async with Runtime(settings, policy, transport="cli", observe=False) as runtime:
        conn, coordinator = runtime.conn, runtime.coordinator
        with err.status("connecting to NATS…"):
            if not await conn.wait_connected(timeout):
                raise NatsUnavailable(str(conn.unavailable()))
            if not await coordinator.wait_ready(timeout):
                raise NatsUnavailable("the coordination services did not finish their setup in NATS; retry")
        yield HumanSession(
            coordinator,
            runtime.guard,
            CallContext(principal, "cli", namespace),
            caller,
            settings.tool_prefix,
        )


def run(settings: Settings, agent: str, timeout: float, action: Callable[[HumanSession], Awaitable[T]]) -> T:
    """Run ``action`` in a session; a tool error or an unreachable NATS becomes one line and its exit code."""
    from nats_mcp.bus.errors import BusError
    from nats_mcp.coord.errors import CoordError

    async def main() -> T:
        async with human_session(settings, agent, timeout) as session:
            return await action(session)

    try:
        return asyncio.run(main())
    except ToolFailed as exc:
        failed(exc)
    except (CoordError, BusError) as exc:
        fail(f"{exc.code}: {exc.message}", code=exit_code(exc.code))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


AsAgent = Annotated[
    str, typer.Option("--as", help="The agent name you act as (your principal's agent; default: human).")
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Timeout = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for NATS.")]


def settings_of(ctx: typer.Context) -> Settings:
    return state(ctx).load().settings
