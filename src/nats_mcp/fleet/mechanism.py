"""The mechanism boundary: how an agent instance is started, stopped and watched (local, ssh, webhook, kubernetes).

A mechanism is small on purpose. ``start`` returns a :class:`Handle`: everything needed to find the instance again,
recorded in the fleet's KV bucket *before* the coordinator moves on, so that a new leader, after the old one died,
knows what runs and can ask :meth:`Mechanism.poll` and :meth:`Mechanism.stop` about instances it did not start.
A handle therefore holds only plain data (no process object, no open connection) and no secret: for ``local`` the
host, pid namespace, pid and the pid's start time (which tells a reused pid from the original); a remote mechanism
would hold its job or machine id.

When the mechanism cannot tell (a ``local`` instance on another host), :meth:`Mechanism.poll` answers ``None`` and
the coordinator falls back to the agent's registry presence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class StartSpec:
    """One instance to start: which target, its instance id, and the agent's identity and environment."""

    target: str
    instance: str
    agent_guid: str
    agent_name: str
    capabilities: tuple[str, ...]
    env: dict[str, str] = field(repr=False)
    """The agent's extra environment (NATS settings, identity, the target's env): may hold secrets, never logged."""

    @property
    def placeholders(self) -> dict[str, str]:
        """What a command template's ``{agent_name}``, ``{agent_guid}``, ``{target}``, ``{instance}`` and
        ``{capabilities}`` stand for in this start (specparts.PLACEHOLDERS names them)."""
        return {
            "agent_name": self.agent_name,
            "agent_guid": self.agent_guid,
            "target": self.target,
            "instance": self.instance,
            "capabilities": ",".join(self.capabilities),
        }

    def command(self, template: list[str]) -> list[str]:
        """``template`` with this start's placeholders filled in."""
        values = self.placeholders
        return [part.format_map(values) for part in template]


@dataclass(frozen=True, slots=True)
class Handle:
    """What survives a coordinator failover (stored as JSON in KV): plain data, no secrets."""

    mechanism: str
    ref: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"mechanism": self.mechanism, "ref": self.ref}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Handle:
        return cls(str(data["mechanism"]), dict(data.get("ref") or {}))


@dataclass(frozen=True, slots=True)
class Exit:
    """An instance that ended: its exit code, when known (None: ended, code unknown, e.g. not our child)."""

    code: int | None


class Mechanism(Protocol):
    """Starts, stops and watches instances of targets."""

    name: str

    async def start(self, spec: StartSpec) -> Handle:
        """Start one instance; raises MechanismError with a message fit for logs (no secret) if it cannot."""
        ...

    async def stop(self, handle: Handle) -> None:
        """Ask the instance to end, then force it after the target's stop timeout; no error if it already ended."""
        ...

    async def poll(self, handle: Handle) -> Exit | bool | None:
        """True while it runs, an :class:`Exit` once it ended, None when this process cannot tell."""
        ...


class MechanismError(Exception):
    """A start that failed before anything ran (the command missing, a secret file unreadable)."""
