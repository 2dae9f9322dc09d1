"""Boundary of the HTTP drain on SIGTERM (transports/http/drain.py): real serve processes, nats-server, raw HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
from pathlib import Path

import httpx2
import pytest
from mcp.client.subscriptions import SubscriptionLost

from tests.support.http_server import HttpServer, api_key, http_client, mcp_client, policy_file, serving
from tests.support.natsserver import NatsServer, wait_for
from tests.support.sse import answer, answer_of, call, next_event, open_session
from tests.support.stdio import agent
from tests.support.work_tools import broadcast, register

pytestmark = pytest.mark.slow

EXIT_TIMEOUT_S = 60


async def status(server: HttpServer, path: str) -> int:
    async with http_client() as probe:
        return (await probe.get(f"{server.base}{path}")).status_code


async def exited(server: HttpServer) -> int:
    return await asyncio.wait_for(server.proc.wait(), EXIT_TIMEOUT_S)


async def stall(server: HttpServer, key: str) -> asyncio.StreamWriter:
    """A POST in flight in the server whose body never finishes (a client that never completes its request)."""
    # Ready first: before the server's NATS connection is up, the key cannot be checked (401 "retry").
    await wait_for(lambda: _is(server, 200), 30, message="the server never became ready")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
            "Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    # uvicorn answers 100 Continue when the server first reads the body: the request is in flight
    assert (await asyncio.wait_for(reader.readline(), 30)).startswith(b"HTTP/1.1 100")
    writer.write(b'{"jsonrpc": "2.0", "id": 1, ')  # ... and the rest never comes
    await writer.drain()
    return writer


async def test_sigterm_finishes_calls_in_flight_ends_streams_and_refuses_new_ones(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    trail = tmp_path / "audit.jsonl"
    env = {
        "NATS_MCP_NAMESPACE": "team-drain",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_SECURITY_AUDIT_FILE": str(trail),
        "NATS_MCP_HTTP_SSE_RETRY_MS": "1500",
        "NATS_MCP_HTTP_DRAIN_TIMEOUT_S": "120",  # the claim below finishes well before; the deadline is not tested here
    }
    key, _ = await api_key(tmp_path, nats_server.url, "worker", "agent")
    async with serving(tmp_path, "drain", nats_server.url, **env) as server, http_client(key, agent="w1") as hc:
        # healthy: ready, and live
        async with http_client() as probe:
            ready = await probe.get(f"{server.base}/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready", "nats": "connected"})
        assert await status(server, "/healthz") == 200

        headers = await open_session(hc, server.url)
        registered = await hc.post(
            server.url,
            json=call(2, "warp_registry_register", agentType="worker", capabilities=["python"]),
            headers=headers,
        )
        assert "error" not in answer_of(registered)
        get_headers = {k: v for k, v in headers.items() if k not in ("content-type",)}
        get_headers["accept"] = "text/event-stream"

        async with (
            hc.stream("GET", server.url, headers=get_headers) as standalone,
            hc.stream(
                "POST", server.url, json=call(3, "warp_work_claim", capability="python", timeout=30000), headers=headers
            ) as claiming,
        ):
            assert (standalone.status_code, claiming.status_code) == (200, 200)
            get_lines, claim_lines = standalone.aiter_lines(), claiming.aiter_lines()
            primed = await next_event(get_lines)
            assert primed is not None and primed["retry"] == "1500"
            claim_primed = await next_event(claim_lines)  # the claim is in the server, waiting for work
            assert claim_primed is not None and claim_primed["data"] == ""

            server.proc.send_signal(signal.SIGTERM)

            # readiness turns false while the process still runs
            await wait_for(lambda: _is(server, 503), 30, message="readiness never turned 503")
            async with http_client() as probe:
                draining = await probe.get(f"{server.base}/readyz")
            assert (draining.status_code, draining.json()["status"]) == (503, "draining")

            # the standalone stream ends with a reconnect hint
            hint = await next_event(get_lines)
            assert hint == {"retry": "1500"}
            assert await next_event(get_lines) is None

            # a new request is refused whole, in a way a client or proxy retries elsewhere
            async with http_client(key, agent="w1") as late:
                refused = await late.post(server.url, json=call(4, "warp_handle_get"), headers=headers)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1" and refused.headers["connection"] == "close"
            assert refused.json()["error"]["data"]["code"] == "draining"
            # ... while the probes' routes still answer: liveness (and the resource metadata it may use instead)
            assert await status(server, "/healthz") == 200
            assert await status(server, "/.well-known/oauth-protected-resource/mcp") == 200

            # the call in flight completes with its answer once work arrives (broadcast through another process)
            assert server.proc.returncode is None
            async with agent(tmp_path, nats_server, "boss", "team-drain") as boss:
                await register(boss)
                await broadcast(boss, "finish me", "python")
            rest = []
            while (event := await next_event(claim_lines)) is not None:
                rest.append(event)
            result = answer(rest)
            assert result["id"] == 3 and "finish me" in json.dumps(result["result"]), result

        assert await exited(server) == 0
    log = server.stderr()
    assert "drained: 1 request(s) finished, 1 stream(s) ended with a reconnect hint, 1 refused, 0 still open" in log
    records = [json.loads(line) for line in trail.read_text().splitlines()]
    assert records[-1]["kind"] == "chain_end"
    assert any(r.get("tool") == "work_claim" and r["outcome"] == "ok" for r in records)


async def test_a_request_that_never_finishes_does_not_hold_the_exit(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {
        "NATS_MCP_NAMESPACE": "team-drain-stall",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_HTTP_DRAIN_TIMEOUT_S": "1",
    }
    key, _ = await api_key(tmp_path, nats_server.url, "staller", "agent")
    async with serving(tmp_path, "stall", nats_server.url, **env) as server:
        writer = await stall(server, key)
        try:
            server.proc.send_signal(signal.SIGTERM)
            assert await exited(server) == 0
        finally:
            writer.close()
    assert "0 refused, 1 still open" in server.stderr()


async def test_a_request_on_a_kept_alive_connection_is_refused_whole_then_the_connection_closes(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """A client that kept a connection from before the drain gets a whole answer on it, never a reset."""
    env = {
        "NATS_MCP_NAMESPACE": "team-drain-idle",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_HTTP_DRAIN_TIMEOUT_S": "600",  # the stalled request below holds the drain; a second signal ends it
    }
    key, _ = await api_key(tmp_path, nats_server.url, "idler", "agent")
    async with serving(tmp_path, "idle", nats_server.url, **env) as server:
        stalled = await stall(server, key)
        reader, idle = await asyncio.open_connection("127.0.0.1", server.port)
        host = f"Host: 127.0.0.1:{server.port}\r\n"
        try:
            idle.write(f"GET /readyz HTTP/1.1\r\n{host}\r\n".encode())
            await idle.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            assert head.startswith(b"HTTP/1.1 200") and b"connection: close" not in head.lower()
            await reader.readexactly(content_length(head))  # the connection is idle now, kept alive

            server.proc.send_signal(signal.SIGTERM)
            await wait_for(lambda: _is(server, 503), 30, message="readiness never turned 503")
            body = json.dumps(call(1, "warp_handle_get")).encode()
            idle.write(
                (
                    f"POST /mcp HTTP/1.1\r\n{host}Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                    f"Accept: application/json, text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body
            )
            await idle.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            assert head.startswith(b"HTTP/1.1 503") and b"connection: close" in head.lower(), head
            answer_body = await reader.readexactly(content_length(head))
            assert json.loads(answer_body)["error"]["data"]["code"] == "draining"
            assert await asyncio.wait_for(reader.read(), 30) == b""  # then closed, nothing more
            assert server.proc.returncode is None  # ... while the stalled request still holds the drain
            server.proc.send_signal(signal.SIGTERM)
            assert await exited(server) == 0
        finally:
            idle.close()
            stalled.close()


def content_length(head: bytes) -> int:
    found = re.search(rb"content-length: (\d+)", head.lower())
    assert found is not None, head
    return int(found.group(1))


async def test_the_delay_still_serves_and_a_second_signal_cuts_the_drain_short(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    env = {
        "NATS_MCP_NAMESPACE": "team-drain-delay",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_HTTP_DRAIN_DELAY_S": "300",  # only the second signal ends this drain
        "NATS_MCP_HTTP_DRAIN_TIMEOUT_S": "600",
    }
    key, _ = await api_key(tmp_path, nats_server.url, "delayed", "agent")
    async with serving(tmp_path, "delay", nats_server.url, **env) as server, http_client(key, agent="d1") as hc:
        headers = await open_session(hc, server.url)
        server.proc.send_signal(signal.SIGTERM)
        await wait_for(lambda: _is(server, 503), 30, message="readiness never turned 503")

        # during the delay requests are still served, each with Connection: close (the next goes elsewhere)
        async with http_client(key, agent="d1") as late:
            served = await late.post(server.url, json=call(2, "warp_handle_get"), headers=headers)
        assert served.status_code == 200 and served.headers["connection"] == "close"
        assert "agentGuid" in json.dumps(answer_of(served))

        server.proc.send_signal(signal.SIGTERM)
        assert await exited(server) == 0
    assert "draining cut short by a second signal" in server.stderr()


async def test_a_listen_stream_ends_at_once_and_does_not_hold_the_drain(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    env = {
        "NATS_MCP_NAMESPACE": "team-drain-listen",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_HTTP_DRAIN_TIMEOUT_S": "600",  # a listen stream held to this deadline would fail the exit below
    }
    key, _ = await api_key(tmp_path, nats_server.url, "listener", "agent")
    async with serving(tmp_path, "listen", nats_server.url, **env) as server:
        async with mcp_client(server.url, key, agent="l1") as client, client.listen(tools_list_changed=True) as sub:
            server.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(SubscriptionLost):  # the stream ends (2026-07-28 listens have no replay)
                async for _ in sub:
                    pass
        assert await exited(server) == 0
    assert "refusing new requests; 1 stream(s) ended with a reconnect hint" in server.stderr()


async def test_readiness_follows_nats_while_serving(tmp_path: Path, nats_server: NatsServer) -> None:
    """Not draining, readiness is NATS's state: 503 without it (the negative of ready), 200 again with it."""
    backoff = {"NATS_MCP_NAMESPACE": "team-ready", "NATS_MCP_NATS_RECONNECT_BACKOFF_MAX_S": "0.5"}
    async with serving(tmp_path, "ready", nats_server.url, "--insecure-dev", **backoff) as server:
        await wait_for(lambda: _is(server, 200), 30, message="never ready")
        nats_server.stop()
        await wait_for(lambda: _is(server, 503), 30, message="still ready without NATS")
        async with http_client() as probe:
            assert (await probe.get(f"{server.base}/readyz")).json() == {"status": "not_ready", "nats": "disconnected"}
        nats_server.start()
        await wait_for(lambda: _is(server, 200), 30, message="not ready again")


async def _is(server: HttpServer, code: int) -> bool:
    try:
        return await status(server, "/readyz") == code
    except httpx2.HTTPError:
        return False
