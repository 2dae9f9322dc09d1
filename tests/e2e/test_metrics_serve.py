"""`nats-mcp serve` exposes its metrics: /metrics on the HTTP transport and the --metrics-port listener (real
processes, nats-server, API keys, the SDK client); stdio through ``observe.metrics.port``."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.http_server import api_key, http_client, mcp_client, policy_file, post_init, run_cli, serving
from tests.support.natsserver import NatsServer, wait_for
from tests.support.stdio import agent, err, ok


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def test_http_serves_metrics_of_calls_and_failed_logins(tmp_path: Path, nats_server: NatsServer) -> None:
    listener_file = tmp_path / "listener.port"
    env = {
        "NATS_MCP_NAMESPACE": "team-m",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_OBSERVE_METRICS_PORT_FILE": str(listener_file),
    }
    async with serving(tmp_path, "metrics", nats_server.url, "--metrics-port", "0", **env) as server:
        key, _ = await api_key(tmp_path, nats_server.url, "alpha", "agent")
        async with mcp_client(server.url, key) as client:
            await ok(client, "warp_registry_register", agentType="developer", capabilities=["python"])
            for _ in range(2):
                await ok(client, "warp_handle_get")
            assert await err(client, "warp_registry_get_info", guid="0" * 32) == "not_found"
        async with http_client() as hc:
            assert (await post_init(hc, server.url)).status_code == 401  # no credential
            wrong = key[:-4] + "AAAA"
            assert (await post_init(hc, server.url, wrong)).status_code == 401
            response = await hc.get(f"{server.base}/metrics")  # no credential needed from loopback
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        assert key not in text and wrong not in text and "alpha" not in text
        found = samples(text)
        calls = "nats_mcp_tool_calls_total"
        assert value(found, calls, tool="registry_register", transport="http", outcome="ok") == 1
        assert value(found, calls, tool="handle_get", transport="http", outcome="ok") == 2
        assert value(found, calls, tool="registry_get_info", transport="http", outcome="not_found") == 1
        assert value(found, "nats_mcp_tool_call_duration_seconds_count", tool="handle_get", transport="http") == 2
        failures = "nats_mcp_auth_failures_total"
        assert value(found, failures, method="none", reason="missing_credentials", transport="http") == 1
        assert value(found, failures, method="api_key", reason="bad_signature", transport="http") == 1
        assert value(found, "nats_mcp_nats_connected") == 1

        # --metrics-port: the same registry on its own loopback listener.
        port = int(listener_file.read_text())  # written before the server answered anything
        async with httpx2.AsyncClient(trust_env=False) as hc:
            again = await hc.get(f"http://127.0.0.1:{port}/metrics")
        assert again.status_code == 200
        assert value(samples(again.text), calls, tool="handle_get", transport="http", outcome="ok") == 2
        assert await server.stop() == 0


async def test_stdio_serves_metrics_on_its_metrics_port(tmp_path: Path, nats_server: NatsServer) -> None:
    port_file = tmp_path / "stdio-metrics.port"
    env = {
        "NATS_MCP_OBSERVE_METRICS_PORT": "0",
        "NATS_MCP_OBSERVE_METRICS_PORT_FILE": str(port_file),
        "NATS_MCP_OBSERVE_METRICS_SAMPLE_INTERVAL_S": "0.2",
    }
    async with agent(tmp_path, nats_server, "solo", "team-s", **env) as client:
        await ok(client, "warp_registry_register", agentType="developer", capabilities=["rust"])
        await ok(client, "warp_work_broadcast", taskId="t-1", description="do it", requiredCapability="rust")
        port = int(port_file.read_text())

        async def scraped() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            async with httpx2.AsyncClient(trust_env=False) as hc:
                found = samples((await hc.get(f"http://127.0.0.1:{port}/metrics")).text)
            # The sampler reads the gauges every 0.2 s: wait for a sample taken after the broadcast.
            return found if value(found, "nats_mcp_work_pending", capability="rust") == 1 else None

        found = await wait_for(scraped, 30, message="the work gauge never showed the broadcast item")
        assert value(found, "nats_mcp_tool_calls_total", tool="work_broadcast", transport="stdio", outcome="ok") == 1
        assert value(found, "nats_mcp_agents", status="online") == 1
        async with httpx2.AsyncClient(trust_env=False) as hc:
            assert (await hc.get(f"http://127.0.0.1:{port}/")).status_code == 404


@pytest.mark.slow
async def test_serve_refuses_a_busy_metrics_port_and_an_exporter_not_installed(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        code, _, error = await run_cli(tmp_path, "serve", "--metrics-port", str(port), NATS_URL=nats_server.url)
        assert code == 1 and f"cannot serve metrics on 127.0.0.1:{port}" in error
    finally:
        busy.close()
    code, _, error = await run_cli(
        tmp_path,
        "serve",
        NATS_URL=nats_server.url,
        NATS_MCP_OBSERVE_TRACING_ENABLED="1",
        NATS_MCP_OBSERVE_TRACING_EXPORTER="otlp",
    )
    assert code == 2 and "opentelemetry-exporter-otlp" in error
