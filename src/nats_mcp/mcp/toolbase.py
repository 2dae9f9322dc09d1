"""The tool-definition boundary: what every tool is made of (input and output models, handler, hints)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.config import JsonDict

from nats_mcp.coord.context import Caller
from nats_mcp.coord.service import Coordinator
from nats_mcp.names import GUID_PATTERN, NAME_PATTERN, TYPE_NAME_PATTERN, UUID_PATTERN

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
