"""Boundary of the ``webhook`` mechanism against a real HTTP receiver (starlette on uvicorn, loopback, port 0) that
checks the signature by the recipe docs/fleet.md gives, written out here on its own: signed starts and stops
accepted, a wrong secret refused (401, not retried), 5xx retried with backoff to one start, 400 never retried."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nats_mcp.fleet.mechanism import MechanismError, StartSpec
from nats_mcp.fleet.webhook import WebhookMechanism, WebhookSpec
from tests.support.certs import CertFiles, issue_server_cert, write_ca
from tests.support.natsserver import wait_for

SECRET = "hook-secret-5e8a21"
NATS_PASS = "nats-pass-c03b77"
WINDOW_S = 300


@dataclass
class Receiver:
    url: str
    scripts: dict[str, list[int]] = field(default_factory=dict)
    """Per path, the statuses to answer in turn (then 200)."""
    seen: list[dict[str, Any]] = field(default_factory=list)


def _verified(secret: bytes, header: str, body: bytes) -> bool:
    """The receiver's recipe: t and v1 from the header, t within the window, v1 == HMAC-SHA256(secret, t.body)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    if not parts.get("t", "").isdigit() or abs(time.time() - int(parts["t"])) > WINDOW_S:
        return False
    expected = hmac.new(secret, parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


@contextlib.asynccontextmanager
async def running_receiver(tls: CertFiles | None = None) -> AsyncIterator[Receiver]:
    """The receiver on 127.0.0.1 and a free port (plain http, or https with ``tls``'s certificate)."""
    state = Receiver("")

    async def hook(request: Request) -> Response:
        body = await request.body()
        ok = _verified(SECRET.encode(), request.headers.get("x-nats-mcp-signature", ""), body)
        state.seen.append(
            {
                "path": request.url.path,
                "verified": ok,
                "delivery": request.headers.get("x-nats-mcp-delivery"),
                "body": json.loads(body),
            }
        )
        if not ok:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        script = state.scripts.get(request.url.path, [])
        if script:
            return Response(status_code=script.pop(0))
        return JSONResponse({"ref": f"job-{len(state.seen)}"})

    app = Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    scheme = "https" if tls else "http"
    state.url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    certs = {"ssl_certfile": str(tls.cert_file), "ssl_keyfile": str(tls.key_file)} if tls else {}
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **certs))  # type: ignore[arg-type]
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    await wait_for(lambda: server.started, 10, message="the receiver did not start")
    try:
        yield state
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as state:
        yield state


def _hook(url: str, **kw: object) -> WebhookSpec:
    return WebhookSpec.model_validate({"url": url, "secret": {"fromEnv": "HOOK_SECRET"}, "backoffS": 0.01, **kw})


def _start(target: str) -> StartSpec:
    env = {"NATS_MCP_NAMESPACE": "fleet-hook", "NATS_URL": "nats://127.0.0.1:4222", "LOOMINAL_AGENT_ID": "b" * 32}
    return StartSpec(target, "i1", "b" * 32, f"{target}-i1", ("python", "review"), env)


async def test_signed_start_and_stop_env_only_when_asked_retries_and_refusals(
    receiver: Receiver, tmp_path: Path
) -> None:
    pass_file = tmp_path / "nats-pass"
    pass_file.write_text(NATS_PASS + "\n")
    specs = {
        "plain": _hook(f"{receiver.url}/plain"),
        "with-env": _hook(
            f"{receiver.url}/with-env", includeEnv=True, env={"NATS_PASSWORD": {"fromFile": str(pass_file)}}
        ),
        "flaky": _hook(f"{receiver.url}/flaky"),
        "bad": _hook(f"{receiver.url}/bad"),
    }
    receiver.scripts = {"/flaky": [503, 503], "/bad": [400, 400]}
    mech = WebhookMechanism(specs, environ={"HOOK_SECRET": SECRET, "COORD_VAR": "coordinator-only"})
    try:
        handle = await mech.start(_start("plain"))
        (start,) = receiver.seen
        assert start["verified"] and start["body"]["event"] == "start"
        body = start["body"]
        assert (body["target"], body["instance"], body["namespace"]) == ("plain", "i1", "fleet-hook")
        assert body["agent"] == {"guid": "b" * 32, "name": "plain-i1"} and body["capabilities"] == ["python", "review"]
        assert "env" not in body and start["delivery"] == body["delivery"]
        assert handle.ref["ref"] == "job-1"  # the receiver's answer, kept for the stop
        await mech.stop(handle)
        stop = receiver.seen[-1]
        assert stop["verified"] and stop["body"]["event"] == "stop"
        assert (stop["body"]["instance"], stop["body"]["ref"]) == ("i1", "job-1")

        await mech.start(_start("with-env"))
        sent = receiver.seen[-1]["body"]["env"]
        assert sent["NATS_PASSWORD"] == NATS_PASS and sent["LOOMINAL_AGENT_ID"] == "b" * 32
        assert "COORD_VAR" not in sent and "HOOK_SECRET" not in sent  # never the coordinator's own environment

        before = len(receiver.seen)
        flaky = await mech.start(_start("flaky"))  # 503, 503, then accepted: one start
        tries = receiver.seen[before:]
        assert len(tries) == 3 and all(t["verified"] for t in tries)
        assert len({t["delivery"] for t in tries}) == 1  # one delivery id: the receiver can drop repeats
        assert flaky.ref["ref"] == f"job-{before + 3}"

        before = len(receiver.seen)
        with pytest.raises(MechanismError, match=r"webhook start to http://127\.0\.0\.1:\d+/bad answered 400; not"):
            await mech.start(_start("bad"))
        assert len(receiver.seen) == before + 1  # a 4xx is final
    finally:
        await mech.close()

    wrong = WebhookMechanism({"plain": specs["plain"]}, environ={"HOOK_SECRET": "not-the-secret"})
    before = len(receiver.seen)
    try:
        with pytest.raises(MechanismError, match="answered 401 \\(the receiver refused the signature") as refused:
            await wrong.start(_start("plain"))
    finally:
        await wrong.close()
    assert len(receiver.seen) == before + 1 and not receiver.seen[-1]["verified"]
    assert "not-the-secret" not in str(refused.value)

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])
    away = WebhookMechanism({"x": _hook(f"http://127.0.0.1:{closed}/x", attempts=3)}, environ={"HOOK_SECRET": SECRET})
    try:
        with pytest.raises(MechanismError, match=r"no answer \(ConnectError\); gave up after 3 attempt\(s\)"):
            await away.start(_start("x"))
    finally:
        await away.close()


async def test_https_receiver_certificate_checked_and_an_untrusted_one_refused_without_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "nats_mcp.fleet")
    trusted = trustme.CA()
    ca_file = write_ca(trusted, tmp_path, "ca")
    other_ca = write_ca(trustme.CA(), tmp_path, "other-ca")
    async with running_receiver(issue_server_cert(trusted, ca_file, tmp_path)) as recv:
        specs = {"t": _hook(f"{recv.url}/t")}
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # read when the client is made (the default CA bundle)
        trusting = WebhookMechanism(specs, environ={"HOOK_SECRET": SECRET})
        try:
            handle = await trusting.start(_start("t"))
        finally:
            await trusting.close()
        assert handle.ref["ref"] == "job-1" and recv.seen[0]["verified"]
        monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))
        doubting = WebhookMechanism(specs, environ={"HOOK_SECRET": SECRET})
        try:
            with pytest.raises(MechanismError, match=r"to https://127\.0\.0\.1:\d+/t: TLS failed \(.+\); not retried"):
                await doubting.start(_start("t"))
        finally:
            await doubting.close()
        assert len(recv.seen) == 1  # nothing reached the receiver
    assert "retrying" not in caplog.text  # and no second attempt: a retry cannot make the certificate trusted
