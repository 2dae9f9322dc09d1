"""The settings keys boundary: every settable leaf, its environment name, whether it is secret; Warp's env names."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr

from nats_mcp.config.coordination import ChannelSettings
from nats_mcp.config.settings import Settings

ENV_PREFIX = "NATS_MCP_"

KeyPath = tuple[str, ...]
"""A leaf's place in the model: ``("nats", "url")``."""


@dataclass(frozen=True)
class Leaf:
    """A settable value of the model."""

    path: KeyPath
    annotation: Any
    secret: bool
    secret_bearing: bool

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def env(self) -> str:
        return ENV_PREFIX + "_".join(self.path).upper()

    @property
    def structured(self) -> bool:
        origin = typing.get_origin(_unwrap_optional(self.annotation))
        return origin in (list, dict)


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _leaves(model: type[BaseModel], prefix: KeyPath = ()) -> Iterator[Leaf]:
    for name, info in model.model_fields.items():
        inner = _unwrap_optional(info.annotation)
        path = (*prefix, name)
        if isinstance(inner, type) and issubclass(inner, BaseModel) and inner is not ChannelSettings:
            yield from _leaves(inner, path)
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        yield Leaf(path, info.annotation, inner is SecretStr, bool(extra.get("secret_bearing")))


LEAVES: dict[KeyPath, Leaf] = {leaf.path: leaf for leaf in _leaves(Settings)}

# Warp's environment variables, with Warp's meaning (which Warp itself did not honour for WORKQUEUE_*).
WARP_ENV: dict[str, KeyPath] = {
    "NATS_URL": ("nats", "url"),
    "NATS_USER": ("nats", "user"),
    "NATS_PASS": ("nats", "password"),
    "MCP_PROJECT_PATH": ("project", "path"),
    "LOOMINAL_PROJECT_ID": ("project", "id"),
    "LOOMINAL_AGENT_ID": ("identity", "agent_id"),
    "LOOMINAL_SUBAGENT_TYPE": ("identity", "subagent_type"),
    "LOG_LEVEL": ("logging", "level"),
    "LOG_FORMAT": ("logging", "format"),
    "WORKQUEUE_ACK_TIMEOUT": ("work", "ack_timeout_ms"),
    "WORKQUEUE_MAX_ATTEMPTS": ("work", "max_attempts"),
    "WORKQUEUE_DLQ_TTL": ("work", "dlq_ttl_ms"),
}
FLEET_AGENT_ENV: dict[str, str] = {
    ENV_PREFIX + "FLEET_TARGET": "the fleet target that started this agent",
    ENV_PREFIX + "FLEET_INSTANCE": "its instance id (the coordinator finds its process by it)",
    ENV_PREFIX + "FLEET_AGENT_NAME": "the agent name the fleet gave it (<target>-<instance>)",
    ENV_PREFIX + "FLEET_CAPABILITIES": "the target's capabilities, comma-separated",
    ENV_PREFIX + "FLEET_IDLE_S": "the target's idle timeout, for an agent that ends itself when idle",
}
"""What `nats-mcp fleet run` sets for the agents it starts (docs/fleet.md), for the agent's own code: no setting
reads them, but they are known, so a fleet agent's `nats-mcp serve` does not warn about them."""
OWN_DISPATCH_ENV = (ENV_PREFIX + "STDIO_OWN_DISPATCH", ENV_PREFIX + "HTTP_OWN_DISPATCH")
"""The switches of the own hot paths (transports/stdio.py, transports/http/modern.py): read by the transports, not
settings, and known so that setting one does not warn that it is ignored."""
SPECIAL_ENV = {ENV_PREFIX + "CONFIG", *FLEET_AGENT_ENV, *OWN_DISPATCH_ENV}
