"""Test boundary of the nats_* operations group: a guard with a real policy in front of the real tool table and
ops facade, on a real NatsConnection (what build_server does per call, without the MCP wire)."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import mcp_types as types

from nats_mcp.api.server import ToolTable, error_result, outcome_of
from nats_mcp.api.tools.base import ERROR_META
from nats_mcp.api.tools.coordination import needs_of
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.config.security import SecuritySettings
from nats_mcp.coord.natsops.service import OpsService
from nats_mcp.security.guard import CallContext, Guard, Refused
from nats_mcp.security.policy import Policy, parse_policy
from nats_mcp.security.principal import Principal

POLICY = """
version: 1
roles:
  nats-reader:
    tools: ["nats_*"]
    namespaces: ["*"]
    nats:
      server: true
      subjects: {read: ["app.*"]}
      streams: {read: ["APP*", "nmcp_*"]}
      buckets: {read: ["cfg*", "nmcp_*"]}
  nats-operator:
    tools: ["nats_*"]
    namespaces: ["*"]
    nats:
      server: true
      # deliberately wider than wise: the server's own streams, buckets and subjects must still be refused
      subjects: {read: ["*"], write: ["app.*", "svc.*", "nmcp.*", "_INBOX.*"]}
      streams: {read: ["*"], write: ["APP*", "NEW*", "nmcp_*", "KV_*"]}
      buckets: {read: ["*"], write: ["cfg*", "nmcp_*"]}
  agent:
    tools: ["*"]
    namespaces: ["*"]
"""


@dataclass
class Result:
    error: str | None
    data: dict[str, Any]
    text: str


class OpsHarness:
    """Calls nats_* tools as a principal holding ``role`` through the guard, as the MCP server does."""

    def __init__(self, conn: NatsConnection, policy: str = POLICY) -> None:
        self.conn = conn
        self.ops = OpsService(conn, conn.settings)
        self.table = ToolTable("warp_", ops=True)
        self.guard = Guard(SecuritySettings(), Policy(parse_policy(policy)))

    def principal(self, role: str) -> Principal:
        return Principal(subject=f"user-{role}", issuer="local", method="local", roles=frozenset({role}))

    async def call(self, role: str, tool: str, **args: Any) -> Result:
        principal = self.principal(role)
        scope = self.guard.policy.nats_scope(principal)
        coordinator: Any = SimpleNamespace(ops=self.ops)

        async def no_caller() -> Any:
            raise AssertionError("nats_* tools act as no agent")

        try:
            result = await self.guard.call(
                CallContext(principal, "stdio", "team-ops"),
                tool,
                args,
                lambda: self.table.call(coordinator, no_caller, tool, args, scope),
                outcome_of,
                needs=needs_of(tool),
            )
        except Refused as refused:
            result = error_result(refused.code, refused.message)
        return _result(result)

    async def ok(self, role: str, tool: str, **args: Any) -> dict[str, Any]:
        r = await self.call(role, tool, **args)
        assert r.error is None, f"{tool} failed: {r.text}"
        assert r.text and not r.text.startswith("Error:")
        return r.data

    async def err(self, role: str, tool: str, **args: Any) -> str:
        r = await self.call(role, tool, **args)
        assert r.error is not None, f"{tool} unexpectedly succeeded: {r.data}"
        assert r.text.startswith("Error: ")
        return r.error


def _result(result: types.CallToolResult) -> Result:
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    if result.is_error:
        error = (result.meta or {})[ERROR_META]
        return Result(str(error["code"]), error, text)
    return Result(None, result.structured_content or {}, text)
