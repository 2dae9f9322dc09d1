"""The SDK's per-call schema lookup (Mcp-Param header checks): each caller sees exactly what its tools/list shows."""

from __future__ import annotations

from nats_mcp.api.server import Security, ToolTable, build_server
from nats_mcp.config.security import SecuritySettings
from nats_mcp.security.guard import Guard
from nats_mcp.security.policy import Policy, parse_policy
from nats_mcp.security.principal import Principal
from tests.support.guard import POLICY

READER = Principal(subject="spiffe://example.org/reader/r1", issuer="ca", method="mtls")
AGENT = Principal(subject="ci-7", issuer="https://idp.example", method="jwt")


def security_of(who: list[Principal]) -> Security:
    """A security whose current caller is whoever ``who`` holds now (the transports read it from the request)."""
    return Security(Guard(SecuritySettings(), Policy(parse_policy(POLICY))), lambda: who[0], "http", "team-a")


def test_the_lookup_gives_the_schema_tools_list_shows_and_nothing_a_caller_may_not_see() -> None:
    who = [READER]
    security = security_of(who)
    table = ToolTable("warp_")
    listed = {tool.name: tool.input_schema for tool in table.visible(security, READER)}
    assert set(listed) == {"warp_channels_read", "warp_channels_list"}
    for name, schema in listed.items():
        assert table.input_schema(security, name) == schema
    assert table.input_schema(security, "warp_work_broadcast") is None  # exists, but not for this caller
    assert table.input_schema(security, "warp_no_such_tool") is None
    who[0] = AGENT  # the next request's caller
    assert table.input_schema(security, "warp_work_broadcast") == table._tool_of["warp_work_broadcast"].input_schema
    assert table.input_schema(security, "warp_work_fail") is None  # denied to agents by the policy


def test_the_server_hands_the_lookup_to_the_sdk() -> None:
    server = build_server(security=security_of([AGENT]))
    lookup = server.get_tool_input_schema
    assert lookup is not None
    schema = lookup("warp_channels_send")
    assert schema is not None and "channel" in schema["properties"]
    assert lookup("warp_work_fail") is None
