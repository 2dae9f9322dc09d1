"""Reservations end to end: three agents over stdio and three over HTTP (real servers, the SDK client), fencing
tokens growing across a server restart, and a role without reservation grants refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nats_mcp.api.resource_uris import RESERVATIONS_URI
from tests.support.cli import cli, trail
from tests.support.http_server import api_key, mcp_client, serving
from tests.support.natsserver import NatsServer, wait_for
from tests.support.reservations import ACQUIRE, Updates, contend, read_reservations
from tests.support.stdio import agent, err, ok

NS = "resv"
POLICY = """
version: 1
roles:
  agent:
    tools: ["*"]
    namespaces: ["*"]
    reservations: ["src/**", "docs/**", "tmp/**", "ok"]
  bystander:
    tools: ["*"]
    namespaces: ["*"]
"""


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_three_agents_over_stdio(tmp_path: Path, nats_server: NatsServer) -> None:
    updates = Updates()
    async with (
        agent(tmp_path, nats_server, "a", NS) as a,
        agent(tmp_path, nats_server, "b", NS) as b,
        agent(tmp_path, nats_server, "c", NS, mode="legacy", message_handler=updates) as c,
    ):
        await c.subscribe_resource(RESERVATIONS_URI)  # the 2025-11-25 way; listen is the resources test's
        await contend(a, b, c)  # (fencing across a restart: the HTTP test below and tests/integration)
        await wait_for(lambda: updates.count >= 1, 10, message="no resources/updated for nats-mcp://reservations")
        body = await read_reservations(c)
        assert body == await ok(c, "warp_reservations_list") and body["count"] == 2

        # People: `nats-mcp reservations list` shows them; `release` is the admin force-release, audited.
        code, listed, error = await cli(tmp_path, nats_server, "reservations", "list", "--json", NATS_MCP_NAMESPACE=NS)
        assert code == 0, error
        held = {r["resources"][0]: r for r in json.loads(listed)["reservations"]}
        assert set(held) == {"src/api/app.py", "tmp/**"}
        victim = held["src/api/app.py"]["reservationId"]
        code, said, error = await cli(tmp_path, nats_server, "reservations", "release", victim, NATS_MCP_NAMESPACE=NS)
        assert code == 0 and victim in said, error
        assert [r["resources"] for r in (await ok(a, "warp_reservations_list"))["reservations"]] == [["tmp/**"]]
        code, _, error = await cli(tmp_path, nats_server, "reservations", "release", victim, NATS_MCP_NAMESPACE=NS)
        assert code == 3 and "not_found" in error
        audited = [json.loads(line) for line in trail(tmp_path).read_text().splitlines()]
        assert [e.get("outcome") for e in audited if e.get("tool") == "reservations_force_release"] == [
            "ok",
            "not_found",
        ]


@pytest.mark.slow
async def test_three_agents_over_http_and_a_restart(tmp_path: Path, nats_server: NatsServer) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    env = {"NATS_MCP_NAMESPACE": "resv-gw", "NATS_MCP_SECURITY_POLICY_FILE": str(policy)}
    key, _ = await api_key(tmp_path, nats_server.url, "team", "agent")
    outsider, _ = await api_key(tmp_path, nats_server.url, "outsider", "bystander")
    async with serving(tmp_path, "gw", nats_server.url, **env) as server:
        async with (
            mcp_client(server.url, key, agent="a") as a,
            mcp_client(server.url, key, agent="b") as b,
            mcp_client(server.url, key, agent="c") as c,
        ):
            last = await contend(a, b, c)
            assert await err(a, ACQUIRE, resources=["deploy/x.yaml"]) == "forbidden"  # outside the role's globs
            assert (
                await err(a, "warp_reservations_force_release", reservationId="0" * 8 + "-0000-4000-8000-" + "0" * 12)
                == "forbidden"
            )
        async with mcp_client(server.url, outsider) as o:
            assert await err(o, ACQUIRE, resources=["src/x"]) == "forbidden"
            # Listing shows only reservations of paths the caller may reserve: none for a role without globs.
            assert (await ok(o, "warp_reservations_list"))["count"] == 0
            assert (await read_reservations(o))["count"] == 0  # the resource shows what the tool does
            # (a role with some globs sees the reservations overlapping them: tests/unit/security)
    async with serving(tmp_path, "gw2", nats_server.url, **env) as server, mcp_client(server.url, key, agent="d") as d:
        again = await ok(d, ACQUIRE, resources=["docs/**"])
        assert again["granted"] and again["fencingToken"] > last
