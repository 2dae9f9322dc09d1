"""Reservations end to end: three agents over stdio and three over HTTP (real servers, the SDK client), fencing
tokens growing across a server restart, and a role without reservation grants refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.http_server import api_key, mcp_client, serving
from tests.support.natsserver import NatsServer
from tests.support.reservations import ACQUIRE, contend
from tests.support.stdio import agent, err, ok

POLICY = """
version: 1
roles:
  agent:
    tools: ["*"]
    namespaces: ["*"]
    reservations: ["src/**", "docs/**", "tmp/**", "ok", "a*b"]
  bystander:
    tools: ["*"]
    namespaces: ["*"]
"""


@pytest.mark.slow
async def test_three_agents_over_stdio(tmp_path: Path, nats_server: NatsServer) -> None:
    async with (
        agent(tmp_path, nats_server, "a", "resv") as a,
        agent(tmp_path, nats_server, "b", "resv") as b,
        agent(tmp_path, nats_server, "c", "resv") as c,
    ):
        await contend(a, b, c)  # (fencing across a restart: the HTTP test below and tests/integration)


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
            assert (await ok(o, "warp_reservations_list"))["count"] == 2  # tmp/** of A and src/api/app.py of B
    async with serving(tmp_path, "gw2", nats_server.url, **env) as server, mcp_client(server.url, key, agent="d") as d:
        again = await ok(d, ACQUIRE, resources=["docs/**"])
        assert again["granted"] and again["fencingToken"] > last
