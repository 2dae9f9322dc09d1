"""The composition root against a real nats-server: what a Runtime opens, and that it closes all of it, in order.

The order shows in NATS: the local agent's lease is given back (the coordinator closed while the connection was
still open) and the audit chain's ``chain_end`` reaches the audit stream (the audit log drained before the
connection closed). Leaving by an error or a cancellation closes the same way.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from nats_mcp.config.settings import Settings
from nats_mcp.observe.assembly import Observability
from nats_mcp.runtime import Runtime
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.audit.log import AuditLog
from nats_mcp.security.audit.store import newest
from nats_mcp.security.policy import Policy
from tests.support.env import connected, settings_for
from tests.support.natsserver import NatsServer


def _settings(tmp_path: Path, url: str, **extra: str) -> Settings:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    return settings_for(
        tmp_path,
        NATS_URL=url,
        NATS_MCP_NAMESPACE="team-rt",
        MCP_PROJECT_PATH=str(project),
        NATS_MCP_SECURITY_AUDIT_FILE=str(tmp_path / "audit.jsonl"),
        **extra,
    )


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def _chain_end_in_nats(tmp_path: Path, url: str, chain: str) -> bool:
    async with connected(tmp_path, url) as conn:
        records, _ = await newest(conn, 1, chain=chain)
    return [json.loads(m.data)["kind"] for m in records] == ["chain_end"]


def _file_kinds(tmp_path: Path) -> list[str]:
    return [json.loads(line)["kind"] for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


async def test_a_runtime_opens_everything_and_closes_it_in_order(tmp_path: Path, nats_server: NatsServer) -> None:
    settings = _settings(tmp_path, nats_server.url, NATS_MCP_OBSERVE_METRICS_PORT="0")
    runtime = Runtime(settings, Policy.load(None), transport="stdio", local_agent=True)
    assert not runtime.conn.connected  # built, not yet started
    async with runtime:
        assert await runtime.conn.wait_connected(10)
        await runtime.start_observing()
        assert isinstance(runtime.obs, Observability)
        assert runtime.guard.audit is runtime.obs.recorder  # the guard records through observability's fan-out
        metrics_port = runtime.obs.metrics_port
        assert metrics_port is not None and not _refused(metrics_port)
        guid = (await runtime.coordinator.local_caller()).guid
        runtime.audit.record(AuditEvent("tool_call", tool="runtime_probe", transport="stdio"))
        chain = runtime.audit.chain
    assert not runtime.conn.connected
    assert _refused(metrics_port)
    assert _file_kinds(tmp_path)[-2:] == ["tool_call", "chain_end"]
    assert await _chain_end_in_nats(tmp_path, nats_server.url, chain)
    # the lease was given back over NATS: the next process of this project is the same agent at once
    async with Runtime(settings, Policy.load(None), transport="stdio", local_agent=True) as again:
        assert (await again.coordinator.local_caller()).guid == guid


async def test_an_error_in_the_body_still_closes_everything(tmp_path: Path, nats_server: NatsServer) -> None:
    settings = _settings(tmp_path, nats_server.url)
    runtime = Runtime(settings, Policy.load(None), transport="http")
    with pytest.raises(ValueError, match="boom"):
        async with runtime:
            assert await runtime.coordinator.wait_ready(10)
            runtime.audit.record(AuditEvent("tool_call", tool="runtime_probe", transport="http"))
            raise ValueError("boom")
    assert not runtime.conn.connected
    assert _file_kinds(tmp_path)[-1] == "chain_end"
    assert await _chain_end_in_nats(tmp_path, nats_server.url, runtime.audit.chain)


async def test_a_part_that_fails_to_close_does_not_keep_the_others_open(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    settings = _settings(tmp_path, nats_server.url, NATS_MCP_OBSERVE_METRICS_PORT="0")
    runtime = Runtime(settings, Policy.load(None), transport="stdio", local_agent=True)
    runtime.start()
    assert await runtime.conn.wait_connected(10)
    await runtime.start_observing()
    assert runtime.obs is not None
    runtime.audit.record(AuditEvent("tool_call", tool="runtime_probe", transport="stdio"))
    real_close = runtime.obs.close

    async def close_then_fail() -> None:  # observability closes first: its failure must not stop the rest
        await real_close()
        raise OSError("metrics listener would not close")

    runtime.obs.close = close_then_fail  # type: ignore[method-assign]
    with pytest.raises(OSError, match="would not close"):
        await runtime.aclose()
    assert not runtime.conn.connected
    assert _file_kinds(tmp_path)[-2:] == ["tool_call", "chain_end"]
    assert await _chain_end_in_nats(tmp_path, nats_server.url, runtime.audit.chain)


async def test_a_cancelled_task_closes_its_runtime(tmp_path: Path, nats_server: NatsServer) -> None:
    settings = _settings(tmp_path, nats_server.url)
    runtime = Runtime(settings, Policy.load(None), transport="grpc")
    ready = asyncio.Event()

    async def serve() -> None:
        async with runtime:
            assert await runtime.coordinator.wait_ready(10)
            runtime.audit.record(AuditEvent("tool_call", tool="runtime_probe", transport="grpc"))
            ready.set()
            await asyncio.Event().wait()  # until cancelled, as a signal does to `serve`

    task = asyncio.create_task(serve())
    await asyncio.wait_for(ready.wait(), 15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not runtime.conn.connected
    assert _file_kinds(tmp_path)[-1] == "chain_end"
    assert await _chain_end_in_nats(tmp_path, nats_server.url, runtime.audit.chain)


async def test_without_connect_nats_waits_for_start(tmp_path: Path, nats_server: NatsServer) -> None:
    runtime = Runtime(_settings(tmp_path, nats_server.url), Policy.load(None), transport="grpc", connect=False)
    async with runtime:
        assert not await runtime.conn.wait_connected(0.5)  # a transport binds its port first
        runtime.start()
        assert await runtime.conn.wait_connected(10)
    assert not runtime.conn.connected


async def test_the_lean_runtime_of_the_dashboard(tmp_path: Path, nats_server: NatsServer) -> None:
    """No observability and no coordinator (the dashboard; the human CLI keeps the coordinator): the guard
    records straight to the audit log, and asking for the coordinator is a programming error."""
    runtime = Runtime(
        _settings(tmp_path, nats_server.url), Policy.load(None), transport="http", observe=False, coordinate=False
    )
    async with runtime:
        assert runtime.obs is None
        assert isinstance(runtime.guard.audit, AuditLog) and runtime.guard.audit is runtime.audit
        with pytest.raises(RuntimeError, match="without a coordinator"):
            _ = runtime.coordinator
        await runtime.start_observing()  # nothing to observe: does nothing
        assert await runtime.conn.wait_connected(10)
    assert not runtime.conn.connected
