"""The tool-definition boundary: what every tool is made of (input and output models, handler, hints)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.config import JsonDict

from nats_mcp.bus.errors import BusError, translate
from nats_mcp.coord.context import Caller
from nats_mcp.coord.errors import CoordError
from nats_mcp.coord.service import Coordinator
from nats_mcp.names import GUID_PATTERN, NAME_PATTERN, TYPE_NAME_PATTERN, UUID_PATTERN, InvalidNameError
from nats_mcp.redact import redact

log = logging.getLogger("nats_mcp.mcp")

# Patterns are published in the schemas to guide agents, but enforced by the domain (code invalid_name).
NAME: JsonDict = {"pattern": NAME_PATTERN}
TYPE: JsonDict = {"pattern": TYPE_NAME_PATTERN}
GUID: JsonDict = {"pattern": GUID_PATTERN}
UUID: JsonDict = {"pattern": UUID_PATTERN}


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoArgs(Args):
    pass


Rendered = tuple[Out, str]
Handler = Callable[[Coordinator, Caller, Any], Awaitable[Rendered]]


def more_hint(next_cursor: str | None) -> str:
    return f'\n\nMore: call again with `cursor: "{next_cursor}"`.' if next_cursor else ""


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its suffix (the name without prefix), description, models, hints and handler."""

    suffix: str
    description: str
    args: type[Args]
    out: type[Out]
    handler: Handler
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False


@dataclass(frozen=True)
class ToolOutcome:
    """What one tool call produced: its structured result and Markdown text, or an error code and message."""

    structured: dict[str, Any]
    text: str
    error: tuple[str, str] | None = None


def failure(code: str, message: str) -> ToolOutcome:
    message = redact(message)
    return ToolOutcome({"error": {"code": code, "message": message}}, f"Error: {message}", (code, message))


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
    except (CoordError, BusError) as exc:
        return failure(exc.code, exc.message)
    except InvalidNameError as exc:
        return failure("invalid_name", str(exc))
    except Exception as exc:
        known = translate(exc)
        if known is not None:
            return failure(known.code, str(known))
        log.exception("tool %s failed", name)
        return failure("internal", "the server failed to complete this call; it has been logged")
    return ToolOutcome(out.model_dump(mode="json"), text)


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
