"""Boundary of what operators' tooling meets: `nats-mcp provision` making a namespace's resources ahead of the
servers, `/healthz` on HTTP and the plaintext health-only gRPC port following NATS for probes."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
from pathlib import Path

import grpc
import httpx2
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nats_mcp.transports.grpc.client import CALL_METHOD
from nats_mcp.transports.grpc.gen.transport_pb2 import Frame
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.http_server import launch, run_cli
from tests.support.natsserver import NatsServer, _pdeathsig_preexec, wait_for


@pytest.mark.slow
async def test_provision_makes_every_resource_once_and_again(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {"NATS_URL": nats_server.url, "NATS_MCP_NAMESPACE": "team-prov"}
    code, out, error = await run_cli(tmp_path, "provision", "--json", **env)
    assert code == 0, error
    names = {r["name"] for r in json.loads(out)["resources"]}
    for wanted in (
        "nmcp_team-prov_work",
        "nmcp_team-prov_workev",
        "nmcp_team-prov_dlq",
        "nmcp_team-prov_inbox",
        "nmcp_team-prov_chan_roadmap",
        "nmcp_audit",
        "KV_nmcp_team-prov_registry",
        "KV_nmcp_team-prov_identity",
        "KV_nmcp_team-prov_workstate",
        "KV_nmcp_team-prov_resv",
        "KV_nmcp_team-prov_fleet",
        "KV_nmcp_apikeys",
        "KV_nmcp_directory",
        "nmcp_team-prov_sse",
    ):
        assert wanted in names, (wanted, sorted(names))
    code, again, error = await run_cli(tmp_path, "provision", "--json", **env)  # idempotent
    assert code == 0 and {r["name"] for r in json.loads(again)["resources"]} == names, error
    code, _, error = await run_cli(tmp_path, "provision", "--timeout", "1", NATS_URL="nats://127.0.0.1:9")
    assert code == 4 and "nats_unavailable" in error and "Traceback" not in error


async def test_http_healthz_follows_nats(tmp_path: Path, nats_server: NatsServer) -> None:
    server = await launch(
        tmp_path,
        "health",
        nats_server.url,
        "--insecure-dev",
        NATS_MCP_NAMESPACE="team-health",
        NATS_MCP_NATS_RECONNECT_BACKOFF_MAX_S="0.5",
    )
    try:
        async with httpx2.AsyncClient(timeout=10) as client:

            async def status_is(code: int) -> bool:
                return (await client.get(f"{server.base}/healthz")).status_code == code

            await wait_for(lambda: status_is(200), 15, message="never healthy")
            answer = await client.get(f"{server.base}/healthz")
            assert answer.json() == {"status": "serving", "nats": "connected"}
            nats_server.stop()
            await wait_for(lambda: status_is(503), 30, message="still healthy without NATS")
            assert (await client.get(f"{server.base}/healthz")).json()["nats"] == "disconnected"
            nats_server.start()
            await wait_for(lambda: status_is(200), 30, message="not healthy again")
    finally:
        assert await server.stop() == 0, server.stderr()[-2000:]


async def test_grpc_health_port_serves_only_health_without_tls(tmp_path: Path, nats_server: NatsServer) -> None:
    port_file = tmp_path / "grpc.port"
    env = isolated_env(
        tmp_path,
        NATS_URL=nats_server.url,
        NATS_MCP_NAMESPACE="team-health",
        NATS_MCP_GRPC_PORT_FILE=str(port_file),
        NATS_MCP_GRPC_HEALTH_PORT="0",
        NATS_MCP_NATS_RECONNECT_BACKOFF_MAX_S="0.5",
    )
    errlog = tmp_path / "grpc.err"
    with errlog.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            nats_mcp_exe(),
            "serve",
            "--transport",
            "grpc",
            "--port",
            "0",
            "--insecure-dev",
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=_pdeathsig_preexec(),
        )
    try:
        line = await wait_for(
            lambda: re.search(r"health.v1 only, without TLS, at 127\.0\.0\.1:(\d+)", errlog.read_text()),
            60,
            message="no health port line",
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{line.group(1)}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            async def health_is(wanted: int) -> bool:
                answer = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                return int(answer.status) == wanted

            serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
            await wait_for(lambda: health_is(serving), 30, message="never SERVING")
            # nothing but health there: the MCP service is not served on this port
            call = channel.unary_stream(
                CALL_METHOD, request_serializer=Frame.SerializeToString, response_deserializer=Frame.FromString
            )(Frame(json=b"{}"))
            try:
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError:
                pass
            assert await call.code() == grpc.StatusCode.UNIMPLEMENTED
            nats_server.stop()
            await wait_for(lambda: health_is(not_serving), 30, message="still SERVING without NATS")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, errlog.read_text()[-2000:]
