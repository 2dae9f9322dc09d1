"""Boundary of the gRPC drain on SIGTERM: health first, calls in flight finish, new calls refused, real processes."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nats_mcp.transports.grpc.client import GrpcTarget, open_channel, open_session
from nats_mcp.transports.grpc.gen.transport_pb2 import Frame
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import NatsServer, _pdeathsig_preexec, wait_for
from tests.support.stdio import agent
from tests.support.work_tools import broadcast, register

pytestmark = pytest.mark.slow

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def rpc(request_id: int, method: str, **params: Any) -> Frame:
    return Frame(json=json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).encode())


async def start(tmp_path: Path, nats_url: str, **env: str) -> tuple[asyncio.subprocess.Process, int, int, Path]:
    """An ``--insecure-dev`` gRPC server with a health port: (process, port, health port, its stderr)."""
    port_file, errlog = tmp_path / "grpc.port", tmp_path / "grpc.err"
    environment = isolated_env(
        tmp_path, NATS_URL=nats_url, NATS_MCP_GRPC_PORT_FILE=str(port_file), NATS_MCP_GRPC_HEALTH_PORT="0", **env
    )
    with errlog.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            *(nats_mcp_exe(), "serve", "--transport", "grpc", "--port", "0", "--insecure-dev"),
            env=environment,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            preexec_fn=_pdeathsig_preexec(),
        )

    def ports() -> tuple[int, int] | None:
        assert proc.returncode is None, errlog.read_text()
        health = re.search(r"health.v1 only, without TLS, at 127\.0\.0\.1:(\d+)", errlog.read_text())
        text = port_file.read_text() if port_file.exists() else ""
        return (int(text), int(health.group(1))) if health and text.endswith("\n") else None

    port, health_port = await wait_for(ports, 60, message=lambda: f"not listening:\n{errlog.read_text()}")
    return proc, port, health_port, errlog


async def frames(call: grpc.aio.StreamStreamCall[Frame, Frame]) -> AsyncIterator[dict[str, Any]]:
    """The answers a session streams back (notifications skipped)."""
    async for frame in call:
        message = json.loads(frame.json)
        if "id" in message:
            yield message


async def test_sigterm_lets_a_call_in_flight_finish_and_says_not_serving_first(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    trail = tmp_path / "audit.jsonl"
    proc, port, health_port, errlog = await start(
        tmp_path,
        nats_server.url,
        NATS_MCP_NAMESPACE="team-grpc-drain",
        NATS_MCP_SECURITY_AUDIT_FILE=str(trail),
        NATS_MCP_GRPC_DRAIN_TIMEOUT_S="120",  # the claim finishes well before
    )
    target = GrpcTarget(f"127.0.0.1:{port}", plaintext=True, agent="w1")
    try:
        async with (
            open_channel(target) as channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{health_port}") as health_channel,
        ):
            health = health_pb2_grpc.HealthStub(health_channel)

            async def health_is(wanted: int) -> bool:
                return (await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)).status == wanted

            await wait_for(lambda: health_is(SERVING), 30, message="never SERVING")
            session = await open_session(channel, target)
            answers = frames(session)
            init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
            await session.write(rpc(1, "initialize", **init))
            assert (await anext(answers))["id"] == 1
            initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            await session.write(Frame(json=json.dumps(initialized).encode()))
            register_args = {"agentType": "worker", "capabilities": ["python"]}
            await session.write(rpc(2, "tools/call", name="warp_registry_register", arguments=register_args))
            assert (await anext(answers))["id"] == 2
            claim_args = {"capability": "python", "timeout": 30000}
            await session.write(rpc(3, "tools/call", name="warp_work_claim", arguments=claim_args))
            await session.write(rpc(4, "ping"))  # answered once the server loop has taken the claim before it
            assert (await anext(answers))["id"] == 4

            proc.send_signal(signal.SIGTERM)
            await wait_for(lambda: health_is(NOT_SERVING), 30, message="health never NOT_SERVING")

            # no new calls: a new stream is refused with a status a client retries elsewhere
            await wait_for(lambda: "draining: no new calls" in errlog.read_text(), 30, message="never stopped")
            async with open_channel(target) as late:
                refused = await open_session(late, target)
                await wait_for(refused.done, 30, message="a new call was not refused")
                assert await refused.code() == grpc.StatusCode.UNAVAILABLE

            async with agent(tmp_path, nats_server, "boss", "team-grpc-drain") as boss:
                await register(boss)
                await broadcast(boss, "finish me", "python")
            claimed = await anext(answers)
            assert claimed["id"] == 3 and "finish me" in json.dumps(claimed["result"]), claimed
            await session.done_writing()
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "drained" in errlog.read_text()
    records = [json.loads(line) for line in trail.read_text().splitlines()]
    assert records[-1]["kind"] == "chain_end"


async def test_a_second_signal_cuts_the_grpc_drain_short(tmp_path: Path, nats_server: NatsServer) -> None:
    proc, port, health_port, errlog = await start(
        tmp_path,
        nats_server.url,
        NATS_MCP_NAMESPACE="team-grpc-cut",
        NATS_MCP_GRPC_DRAIN_DELAY_S="300",  # only the second signal ends this drain
        NATS_MCP_GRPC_DRAIN_TIMEOUT_S="600",
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{health_port}") as health_channel:
            health = health_pb2_grpc.HealthStub(health_channel)

            async def health_is(wanted: int) -> bool:
                return (await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)).status == wanted

            await wait_for(lambda: health_is(SERVING), 30, message="never SERVING")
            proc.send_signal(signal.SIGTERM)
            await wait_for(lambda: health_is(NOT_SERVING), 30, message="health never NOT_SERVING")
        # during the delay calls are still taken
        target = GrpcTarget(f"127.0.0.1:{port}", plaintext=True, agent="d1")
        async with open_channel(target) as channel:
            session = await open_session(channel, target)
            await session.write(rpc(1, "ping"))
            assert (await anext(frames(session)))["id"] == 1
            await session.done_writing()
            assert await session.code() == grpc.StatusCode.OK
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "draining cut short by a second signal" in errlog.read_text()
