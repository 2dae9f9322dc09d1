"""The tool-definition boundary: what every tool is made of (input and output models, handler, hints, needs).

Adding a tool is one file: its family module (``api/tools/<family>.py``) defines the input model (arguments naming
a guarded resource use the marked types of ``api/schema.py``), the output model, the handler, and a ``ToolSpec`` in
the family's table with the ``needs`` it touches (security/needs.py); ``docs/tools.md`` is then regenerated
(``python -m nats_mcp.api.contract``). A spec whose marked arguments and needs disagree cannot be built.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

from nats_mcp.bus.errors import translate
from nats_mcp.coord.context import Caller
from nats_mcp.coord.service import Coordinator
from nats_mcp.core.errors import NatsMcpError
from nats_mcp.core.redact import redact
from nats_mcp.security.needs import Needs, ResourceKind, Touches, check_declared

if TYPE_CHECKING:  # the nats_* tools' module imports it; a coordination tool's caller need not (issue 22)
    from nats_mcp.coord.natsops.service import NatsScope, OpsService

log = logging.getLogger("nats_mcp.api")


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoArgs(Args):
    pass


Rendered = tuple[Out, str]
Handler = Callable[[Coordinator, Caller, Any], Awaitable[Rendered]]
OpsHandler = Callable[["OpsService", "NatsScope", Any], Awaitable[Rendered]]


def more_hint(next_cursor: str | None) -> str:
    return f'\n\nMore: call again with `cursor: "{next_cursor}"`.' if next_cursor else ""


def _touches(annotation: Any) -> ResourceKind | None:
    """The resource kind an annotation is marked with (looking inside ``X | None``, ``list[X]``), None if unmarked."""
    if get_origin(annotation) is Annotated:
        kind = next((m.kind for m in annotation.__metadata__ if isinstance(m, Touches)), None)
        if kind is not None:
            return kind
    return next((k for k in map(_touches, get_args(annotation)) if k is not None), None)


def marked_args(model: type[BaseModel]) -> dict[str, ResourceKind | None]:
    """Every argument of ``model`` with the kind of resource it is marked as naming (None: unmarked)."""
    marked: dict[str, ResourceKind | None] = {}
    for name, field in model.model_fields.items():
        kind = next((m.kind for m in field.metadata if isinstance(m, Touches)), None)
        marked[name] = kind if kind is not None else _touches(field.annotation)
    return marked


H = TypeVar("H", Handler, OpsHandler)


@dataclass(frozen=True)
class Spec(Generic[H]):
    """One tool: its suffix (the name without prefix), human title, description, models, hints, handler, and the
    needs the guard checks each call against (security/needs.py); a spec whose marked arguments no need covers
    cannot be built."""

    suffix: str
    title: str
    description: str
    args: type[Args]
    out: type[Out]
    handler: H
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    needs: Needs = ()

    def __post_init__(self) -> None:
        check_declared(self.suffix, marked_args(self.args), self.needs)


class ToolSpec(Spec[Handler]):
    """A warp_* tool: its handler gets the coordinator and the calling agent."""


class OpsSpec(Spec[OpsHandler]):
    """A nats_* tool: its handler gets the ops facade and the caller's NATS scope."""


ERROR_META = "io.nats-mcp/error"
"""The ``_meta`` key of a tool error result: ``{"code", "message"[, "retryAfterS"]}``, the machine-readable form.

An error result has no ``structuredContent``: it would have to match the tool's ``outputSchema``, and the
TypeScript SDK (Claude Code, Cursor, VS Code, the Inspector) checks it even when ``isError`` is set, throwing
away the whole result (``-32602``) when it does not match.
"""


def error_text(code: str, message: str) -> str:
    """The text block of a tool error: the ``Error: `` prefix, then the stable code, so a model sees both."""
    return f"Error: [{code}] {message}"


def tool_error(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The error of a ``tools/call`` result as on the wire (``_meta``'s :data:`ERROR_META`), None for a success.

    An error result from elsewhere (without our ``_meta``) reads as ``internal``.
    """
    if not result.get("isError"):
        return None
    error = (result.get("_meta") or {}).get(ERROR_META)
    return error if isinstance(error, dict) else {"code": "internal", "message": ""}


@dataclass(frozen=True)
class ToolOutcome:
    """What one tool call produced: its structured result and Markdown text, or an error code and message."""

    structured: dict[str, Any]
    text: str
    error: tuple[str, str] | None = None


def failure(code: str, message: str) -> ToolOutcome:
    message = redact(message)
    return ToolOutcome({}, error_text(code, message), (code, message))


def validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return "invalid arguments: " + "; ".join(parts)


async def run_rendered(
    name: str, args_model: type[Args], run: Callable[[Any], Awaitable[Rendered]], arguments: dict[str, Any] | None
) -> ToolOutcome:
    """Validate ``arguments`` with ``args_model``, run, render; every failure becomes a contract error, never a crash.

    The one dispatch of every tool: the MCP server wraps it in a ``CallToolResult``, the human CLI reads it as is.
    """
    try:
        out, text = await run(args_model.model_validate(arguments or {}))
    except ValidationError as exc:
        return failure("invalid_argument", validation_message(exc))
    except Exception as exc:
        known = contract_error(exc)
        if known is not None:
            return failure(*known)
        log.error("tool %s failed", name, exc_info=exc)
        return failure("internal", "the server failed to complete this call; it has been logged")
    return ToolOutcome(out.model_dump(mode="json"), text)


def contract_error(exc: BaseException) -> tuple[str, str] | None:
    """The tool contract's (code, message) of a failure a caller may see; None for an internal one, whose text may
    name the server's insides: the caller logs it and answers generically."""
    if isinstance(exc, NatsMcpError):
        return None if exc.code == "internal" else (exc.code, exc.message)
    known = translate(exc)  # a nats-py failure that escaped the bus edge
    return None if known is None else (known.code, str(known))


async def run_tool(
    spec: ToolSpec,
    name: str,
    coordinator: Coordinator,
    caller: Callable[[], Awaitable[Caller]],
    arguments: dict[str, Any] | None,
) -> ToolOutcome:
    """One call of a coordination tool, as the agent ``caller`` gives (see :func:`run_rendered`)."""

    async def run(args: Any) -> Rendered:
        return await spec.handler(coordinator, await caller(), args)

    return await run_rendered(name, spec.args, run, arguments)
