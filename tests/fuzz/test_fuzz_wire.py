"""Malformed messages on every wire: random lines on stdio, random bodies over HTTP, random frames and random bytes
over gRPC. No crash, no hang, every answer well-formed (a JSON-RPC message, an HTTP status below 500, a gRPC
status of ours), and the server still serves afterwards. ``NATS_MCP_FUZZ_EXAMPLES`` sets the budget."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nats_mcp.transports.grpc.client import CALL_METHOD, SESSION_METHOD, GrpcTarget, open_channel
from nats_mcp.transports.grpc.gen.transport_pb2 import Frame
from tests.fuzz.schemas import JSON
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.http_server import INIT, MCP_HEADERS, HttpServer, launch
from tests.support.natsserver import NatsServer, wait_for

EXAMPLES = int(os.environ.get("NATS_MCP_FUZZ_EXAMPLES", "12"))
WIRE = settings(
    max_examples=EXAMPLES * 2,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ANSWER_TIMEOUT_S = 30.0

METHODS = st.sampled_from(
    [
        "initialize",
        "tools/call",
        "tools/list",
        "resources/read",
        "resources/subscribe",
        "subscriptions/listen",
        "prompts/get",
        "logging/setLevel",
        "ping",
        "nope/nothing",
        "notifications/initialized",
        "notifications/cancelled",
    ]
)
IDS = st.none() | st.integers() | st.text(max_size=8) | st.floats(allow_nan=False) | st.lists(st.integers(), max_size=2)
JSONRPC_ISH = st.fixed_dictionaries(
    {"method": METHODS},
    optional={"jsonrpc": st.sampled_from(["2.0", "1.0", 2]), "id": IDS, "params": JSON, "result": JSON, "error": JSON},
)
GARBAGE = (
    st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | JSON.map(lambda v: json.dumps(v).encode())
    | JSONRPC_ISH.map(lambda v: json.dumps(v).encode())
    | JSONRPC_ISH.map(lambda v: json.dumps(v).encode()[: max(1, len(json.dumps(v)) // 2)])  # truncated
)


# ---- stdio ---------------------------------------------------------------------------------------------------------


class RawStdio:
    """`nats-mcp serve` over raw pipes: lines in, every line out checked to be one JSON-RPC message."""

    def __init__(self, base: Path, nats_url: str) -> None:
        env = isolated_env(base, NATS_URL=nats_url, NATS_MCP_NAMESPACE="team-wire")
        self.errlog = (base / "serve.log").open("ab")
        self.proc = subprocess.Popen(
            [nats_mcp_exe(), "serve"],
            env=env,
            cwd=base,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errlog,
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.next_id = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.replace(b"\n", b" ") + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send a request and return its response; every message before it must be well-formed JSON-RPC."""
        self.next_id += 1
        mine = f"check-{self.next_id}"
        self.send(json.dumps({"jsonrpc": "2.0", "id": mine, "method": method, "params": params}).encode())
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = self.lines.get(timeout=left)
            except queue.Empty:
                break
            message = json.loads(raw)
            assert isinstance(message, dict) and message.get("jsonrpc") == "2.0", raw
            assert ("method" in message) != ("result" in message or "error" in message), raw
            if message.get("id") == mine:
                return message
        raise AssertionError(f"no answer to {method} within {ANSWER_TIMEOUT_S} s; the server is {self.proc.poll()}")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.errlog.close()


@pytest.fixture
def stdio(tmp_path: Path, nats_server: NatsServer) -> Iterator[RawStdio]:
    raw = RawStdio(tmp_path, nats_server.url)
    init = raw.request("initialize", INIT["params"])
    assert init["result"]["protocolVersion"] == "2025-11-25"
    raw.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
    try:
        yield raw
    finally:
        raw.close()
        assert raw.proc.returncode == 0, (tmp_path / "serve.log").read_text()[-2000:]


@WIRE
@given(lines=st.lists(GARBAGE, min_size=1, max_size=8))
def test_stdio_answers_garbage_with_json_rpc_and_keeps_serving(stdio: RawStdio, lines: list[bytes]) -> None:
    for line in lines:
        stdio.send(line)
    answer = stdio.request("tools/list", {})
    assert len(answer["result"]["tools"]) == 32


# ---- HTTP ----------------------------------------------------------------------------------------------------------


@pytest.fixture
async def http(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[HttpServer]:
    server = await launch(tmp_path, "wire", nats_server.url, "--insecure-dev", NATS_MCP_NAMESPACE="team-wire")
    try:
        yield server
    finally:
        assert await server.stop() == 0, server.stderr()[-2000:]


HEADER_SETS = st.sampled_from(
    [
        MCP_HEADERS,
        MCP_HEADERS | {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call"},
        MCP_HEADERS | {"mcp-protocol-version": "1999-01-01"},
        {"content-type": "text/plain"},
        {"accept": "image/png", "content-type": "application/json"},
    ]
)


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
@WIRE
@given(body=GARBAGE, headers=HEADER_SETS, method=st.sampled_from(["POST", "POST", "GET", "DELETE", "PUT"]))
async def test_http_answers_garbage_below_500_and_keeps_serving(
    http: HttpServer, body: bytes, headers: dict[str, str], method: str
) -> None:
    async with httpx2.AsyncClient(timeout=ANSWER_TIMEOUT_S) as client:
        answer = await client.request(method, http.url, content=body if method != "GET" else None, headers=headers)
        assert answer.status_code < 500, (answer.status_code, answer.text[:300])
        fine = await client.post(http.url, json=INIT, headers=MCP_HEADERS)
        assert fine.status_code == 200, fine.text[:300]


# ---- gRPC ----------------------------------------------------------------------------------------------------------


OURS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
"""The statuses our service ends a call with (a JSON-RPC error travels inside a frame, with OK)."""
UNDECODABLE = {grpc.StatusCode.INVALID_ARGUMENT}
"""Bytes that are not a protobuf ``Frame`` (or are one without a JSON-RPC message): refused by our handler."""


@pytest.fixture
async def grpc_target(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[GrpcTarget]:
    import asyncio
    import signal

    port_file = tmp_path / "grpc.port"
    env = isolated_env(
        tmp_path,
        NATS_URL=nats_server.url,
        NATS_MCP_NAMESPACE="team-wire",
        NATS_MCP_GRPC_PORT_FILE=str(port_file),
        GRPC_VERBOSITY="NONE",
    )
    with (tmp_path / "grpc.err").open("wb") as errlog:
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
            stderr=errlog,
        )
    try:
        port = await wait_for(
            lambda: port_file.exists() and port_file.read_text().endswith("\n") and int(port_file.read_text()),
            60,
            message="no port file",
        )
        yield GrpcTarget(f"127.0.0.1:{port}", plaintext=True, agent="fuzzer")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, (tmp_path / "grpc.err").read_text()[-2000:]


async def still_serves(target: GrpcTarget) -> None:
    channel = open_channel(target)
    try:
        call = channel.unary_stream(
            CALL_METHOD, request_serializer=Frame.SerializeToString, response_deserializer=Frame.FromString
        )
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "fuzz", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}}
        frames = [
            f.json
            async for f in call(
                Frame(json=json.dumps(request).encode()), metadata=target.metadata(), timeout=ANSWER_TIMEOUT_S
            )
        ]
        assert len(json.loads(frames[-1])["result"]["tools"]) == 32
    finally:
        await channel.close()


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
@settings(WIRE, max_examples=EXAMPLES)
@given(frames=st.lists(GARBAGE, min_size=1, max_size=4), raw=st.binary(max_size=64))
async def test_grpc_answers_garbage_frames_and_bytes_with_a_status_and_keeps_serving(
    grpc_target: GrpcTarget, frames: list[bytes], raw: bytes
) -> None:
    channel = open_channel(grpc_target)
    try:
        # a Call with one random frame
        call = channel.unary_stream(
            CALL_METHOD, request_serializer=Frame.SerializeToString, response_deserializer=Frame.FromString
        )
        one = call(Frame(json=frames[0]), metadata=grpc_target.metadata(), timeout=ANSWER_TIMEOUT_S)
        try:
            async for answer in one:
                assert json.loads(answer.json)["jsonrpc"] == "2.0"
        except grpc.aio.AioRpcError:
            pass
        assert await one.code() in OURS, (frames[0], await one.details())

        # a Session fed random frames
        session = channel.stream_stream(
            SESSION_METHOD, request_serializer=Frame.SerializeToString, response_deserializer=Frame.FromString
        )
        stream = session(
            iter([Frame(json=f) for f in frames]), metadata=grpc_target.metadata(), timeout=ANSWER_TIMEOUT_S
        )
        try:
            async for answer in stream:
                assert json.loads(answer.json)["jsonrpc"] == "2.0"
        except grpc.aio.AioRpcError:
            pass
        code, details = await stream.code(), await stream.details()
        # grpc-python's client reports its own INTERNAL "Internal error from Core" when it is still writing
        # frames after the server ended the stream with our status (the quirk our client avoids by writing
        # after admission, one message at a time); the server's answer is then lost to the client, not wrong.
        client_race = code == grpc.StatusCode.INTERNAL and details == "Internal error from Core" and len(frames) > 1
        assert code in OURS or client_race, (frames, details)

        # bytes that are not even a protobuf Frame
        bare = channel.unary_stream(CALL_METHOD)
        undecodable = bare(raw, metadata=grpc_target.metadata(), timeout=ANSWER_TIMEOUT_S)
        try:
            async for _ in undecodable:
                pass
        except grpc.aio.AioRpcError:
            pass
        assert await undecodable.code() in UNDECODABLE, (raw, await undecodable.details())

        # the same bytes to the typed adapter (empty bytes are an empty request: a tool error, status OK)
        typed = channel.unary_unary("/model_context_protocol.Mcp/CallTool")
        try:
            await typed(raw, metadata=grpc_target.metadata(), timeout=ANSWER_TIMEOUT_S)
            status = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as error:
            status = error.code()
        assert status in {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}, (raw, status)
    finally:
        await channel.close()
    await still_serves(grpc_target)
