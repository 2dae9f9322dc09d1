"""The test-fixtures mode: loaded only from this checkout's tests/, and then guarded and audited like any tool."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

import nats_mcp
from nats_mcp.api.fixtures import ENV, load_fixtures
from nats_mcp.api.server import Security, build_server
from nats_mcp.config.security import SecuritySettings
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.guard import Guard
from nats_mcp.security.policy import Policy, parse_policy
from nats_mcp.security.principal import Principal
from tests.support import conformance_fixtures

MODULE = "tests.support.conformance_fixtures"
CALLER = Principal(subject="dev", issuer="test", method="jwt", roles=frozenset({"agent"}))


class Trail:
    """An audit recorder keeping (kind, tool, outcome)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str | None, str | None]] = []

    def record(self, event: AuditEvent) -> None:
        self.records.append((event.kind, event.tool, event.outcome))


def test_this_checkouts_fixtures_module_loads(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "nats_mcp.api.fixtures"):
        assert load_fixtures({ENV: MODULE}) is conformance_fixtures.FIXTURES
    assert "serving the test fixtures" in caplog.text


def test_without_the_variable_nothing_loads() -> None:
    assert load_fixtures({}) is None
    assert load_fixtures({ENV: ""}) is None


@pytest.mark.parametrize(
    ("name", "package_file", "why"),
    [
        # an installed package: nats_mcp in site-packages, not in a checkout's src/
        (MODULE, "/usr/lib/python3/site-packages/nats_mcp/__init__.py", "not from a source checkout"),
        # another checkout's layout: its tests/ is not the tests package on the path
        (MODULE, "{tmp}/src/nats_mcp/__init__.py", "tests package is not importable from"),
        ("os", None, "not a module of the tests package"),
        ("tests..support", None, "not a module of the tests package"),
        ("tests.support.no_such_module", None, "cannot import it"),
        ("tests.support.env", None, "not a fixtures module"),  # importable, but exports no FIXTURES
    ],
)
def test_anything_else_is_refused_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, package_file: str | None, why: str
) -> None:
    with caplog.at_level(logging.WARNING, "nats_mcp.api.fixtures"):
        assert load_fixtures({ENV: name}, package_file and package_file.format(tmp=tmp_path)) is None
    assert f"{ENV}={name} ignored" in caplog.text and why in caplog.text, caplog.text
    assert "serving" not in caplog.text


def test_the_checkout_layout_is_what_the_loader_checks() -> None:
    package = Path(nats_mcp.__file__).resolve().parent
    assert package.parent.name == "src" and (package.parent.parent / "tests" / "support").is_dir()


def served(monkeypatch: pytest.MonkeyPatch, policy: str, trail: Trail) -> Any:
    monkeypatch.setenv(ENV, MODULE)
    guard = Guard(SecuritySettings(), Policy(parse_policy(policy)), trail)
    return build_server(security=Security(guard, lambda: CALLER, "http", "team-a"))


async def test_fixtures_are_listed_called_and_audited_when_the_policy_grants_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trail = Trail()
    server = served(monkeypatch, "roles: {agent: {tools: ['test_*'], namespaces: ['*']}}", trail)
    async with Client(server) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        fixtures = {tool.name for tool in conformance_fixtures.FIXTURES.tools}
        assert tools == {name for name in fixtures if name.startswith("test_")}  # what the policy grants, no more
        assert "json_schema_2020_12_tool" in fixtures
        result = await client.call_tool("test_simple_text", {})
        assert not result.is_error and isinstance(result.content[0], types.TextContent)
        failed = await client.call_tool("test_error_handling", {})
        assert failed.is_error
        prompt = await client.get_prompt("test_prompt_with_arguments", {"arg1": "a1", "arg2": "a2"})
        assert "a1" in str(prompt.messages) and "a2" in str(prompt.messages)
    assert ("tool_call", "test_simple_text", "ok") in trail.records
    assert ("tool_call", "test_error_handling", "internal") in trail.records
    assert ("tool_call", "test_prompt_with_arguments", "ok") in trail.records


async def test_a_policy_that_does_not_grant_them_hides_and_refuses_them(monkeypatch: pytest.MonkeyPatch) -> None:
    trail = Trail()
    server = served(monkeypatch, "roles: {agent: {tools: ['channels_*'], namespaces: ['*']}}", trail)
    async with Client(server) as client:
        assert not [t.name for t in (await client.list_tools()).tools if t.name.startswith("test_")]
        refused = await client.call_tool("test_simple_text", {})
        assert refused.is_error and "[forbidden]" in str(refused.content[0])
        assert not [p.name for p in (await client.list_prompts()).prompts if p.name.startswith("test_")]
        with pytest.raises(MCPError) as prompt_refused:
            await client.get_prompt("test_simple_prompt")
        assert prompt_refused.value.data == {"code": "forbidden"}
    assert ("denied", "test_simple_text", "forbidden") in trail.records
    assert ("denied", "test_simple_prompt", "forbidden") in trail.records
    assert not [r for r in trail.records if r[1] and r[1].startswith("test_") and r[2] == "ok"]
