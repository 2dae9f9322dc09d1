"""Boundary check of the test harness itself: each nats-server fixture variant, exercised with nats-py."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import PubAck, StorageType, StreamConfig

from tests.support.certs import client_ssl_context, make_nkey_user
from tests.support.natsserver import (
    ConditionTimeoutError,
    NatsCluster,
    NatsServer,
    NatsServerError,
    NKeyNatsServer,
    PortInUseError,
    TlsNatsServer,
    TokenNatsServer,
    UserPassNatsServer,
    wait_for,
    wait_for_sync,
)

pytestmark = pytest.mark.timeout(60)

REJECTED = (OSError, nats.errors.Error)


async def _quiet(_: Exception) -> None:
    """error_cb that keeps nats-py from logging expected failures as tracebacks."""


@asynccontextmanager
async def connected(servers: str | Sequence[str], **kw: Any) -> AsyncIterator[Client]:
    kw.setdefault("error_cb", _quiet)
    nc = await nats.connect(servers if isinstance(servers, str) else list(servers), **kw)
    try:
        yield nc
    finally:
        await nc.close()


async def connect_once(servers: str, **kw: Any) -> Client:
    """Single connection attempt, no reconnects: for negative tests."""
    return await nats.connect(
        servers, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2, error_cb=_quiet, **kw
    )


async def assert_echo(nc: Client, subject: str = "echo.ping") -> None:
    async def handler(msg: Any) -> None:
        await msg.respond(b"pong:" + msg.data)

    sub = await nc.subscribe(subject, cb=handler)
    await nc.flush()  # subscription is registered server-side before the request (NoResponders flake)
    reply = await nc.request(subject, b"ping", timeout=2)
    assert reply.data == b"pong:ping"
    await sub.unsubscribe()


async def assert_jetstream_roundtrip(nc: Client, stream: str = "HARNESS", replicas: int = 1) -> None:
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name=stream, subjects=[f"{stream.lower()}.>"], num_replicas=replicas, storage=StorageType.FILE)
    )

    async def published() -> PubAck:  # a replicated stream answers once its leader is elected
        return await js.publish(f"{stream.lower()}.a", b"hello", timeout=2, headers={"Nats-Msg-Id": "hello"})

    ack = await wait_for(published, 20, interval=0.1, message=f"{stream} never acknowledged", ignore=REJECTED)
    assert ack.stream == stream
    msg = await js.get_msg(stream, ack.seq)
    assert msg.data == b"hello"


# ---- plain + lifecycle ------------------------------------------------------------------------------------


async def test_plain_server_core_and_jetstream(nats_server: NatsServer) -> None:
    assert nats_server.url == f"nats://127.0.0.1:{nats_server.port}"
    assert nats_server.port > 0
    assert set(nats_server.ports) >= {"nats", "monitoring"}
    assert nats_server.monitor("healthz") == {"status": "ok"}
    assert nats_server.store_dir.is_dir()
    async with connected(nats_server.url) as nc:
        await assert_echo(nc)
        await assert_jetstream_roundtrip(nc)
    assert (nats_server.store_dir / "jetstream").is_dir()


async def test_restart_same_port_client_reconnects_and_store_survives(nats_server: NatsServer) -> None:
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    port, old_pid = nats_server.port, nats_server.pid
    async with connected(
        nats_server.url, reconnected_cb=on_reconnect, reconnect_time_wait=0.05, max_reconnect_attempts=-1
    ) as nc:
        await assert_jetstream_roundtrip(nc)
        nats_server.restart()
        assert nats_server.port == port
        assert nats_server.pid != old_pid
        await asyncio.wait_for(reconnected.wait(), timeout=5)
        await assert_echo(nc)
        js = nc.jetstream()
        msg = await js.get_msg("HARNESS", 1)  # same store_dir: data written before the restart
        assert msg.data == b"hello"


async def test_kill_then_start_recovers_jetstream(nats_server: NatsServer) -> None:
    async with connected(nats_server.url) as nc:
        await assert_jetstream_roundtrip(nc)
    nats_server.kill()
    assert not nats_server.is_running
    nats_server.start()
    async with connected(nats_server.url) as nc:
        info = await nc.jetstream().stream_info("HARNESS")
        assert info.state.messages == 1


def _hold_port(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # tolerate TIME_WAIT leftovers; LISTEN still blocks
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_restart_waits_for_port_to_be_released(nats_server: NatsServer) -> None:
    nats_server.stop()
    holder = _hold_port(nats_server.port)

    def release_once_refused() -> None:  # the port comes free only after the server was refused it at least once
        try:
            wait_for_sync(lambda: "address already in use" in nats_server.log_text(), 30, message="never refused")
        finally:
            holder.close()

    releaser = threading.Thread(target=release_once_refused, daemon=True)
    releaser.start()
    try:
        nats_server.start()
    finally:
        releaser.join(35)
        holder.close()
    assert nats_server.is_running
    assert "address already in use" in nats_server.log_text()


def test_restart_fails_clearly_when_port_stays_taken(nats_server: NatsServer) -> None:
    nats_server.stop()
    with _hold_port(nats_server.port), pytest.raises(PortInUseError, match="address already in use") as info:
        nats_server.start(port_timeout=0.3)
    assert str(nats_server.log_path) in str(info.value)


def test_startup_failure_reports_server_log(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "bad", extra_config="jetstream { store_dir: 42 } nonsense {{{")
    with pytest.raises(NatsServerError, match="exited with code") as info:
        server.start()
    assert "last lines of" in str(info.value)
    assert not server.is_running


def test_wait_for_sync_reports_message_and_last_error() -> None:
    with pytest.raises(ConditionTimeoutError, match="never true") as info:
        wait_for_sync(lambda: 1 / 0, timeout=0.1, interval=0.01, message="never true", ignore=(ZeroDivisionError,))
    assert "ZeroDivisionError" in str(info.value)
    assert wait_for_sync(lambda: "ok", timeout=0.1) == "ok"


async def test_wait_for_async_predicate() -> None:
    calls = 0

    async def ready() -> int:
        nonlocal calls
        calls += 1
        return calls if calls >= 3 else 0

    assert await wait_for(ready, timeout=1, interval=0.01) == 3
    with pytest.raises(ConditionTimeoutError, match="nope"):
        await wait_for(lambda: False, timeout=0.05, interval=0.01, message=lambda: "nope")


# ---- auth variants ----------------------------------------------------------------------------------------


async def test_userpass(nats_userpass: UserPassNatsServer) -> None:
    async with connected(nats_userpass.url, user=nats_userpass.user, password=nats_userpass.password) as nc:
        await assert_echo(nc)
        await assert_jetstream_roundtrip(nc)
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect_once(nats_userpass.url, user=nats_userpass.user, password="wrong")
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect_once(nats_userpass.url)


async def test_token(nats_token: TokenNatsServer) -> None:
    async with connected(nats_token.url, token=nats_token.token) as nc:
        await assert_echo(nc)
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect_once(nats_token.url, token=nats_token.token + "x")


async def test_nkey(nats_nkey: NKeyNatsServer, tmp_path: Path) -> None:
    assert nats_nkey.public_key.startswith("U")
    assert stat.S_IMODE(os.stat(nats_nkey.seed_file).st_mode) == 0o600
    assert nats_nkey.seed_file.read_text().startswith("SU")
    async with connected(nats_nkey.url, nkeys_seed=str(nats_nkey.seed_file)) as nc:
        await assert_echo(nc)
    stranger = make_nkey_user(tmp_path / "stranger")
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect_once(nats_nkey.url, nkeys_seed=str(stranger.seed_file))


# ---- TLS variants -----------------------------------------------------------------------------------------


async def test_tls(nats_tls: TlsNatsServer) -> None:
    assert nats_tls.tls_url == f"tls://127.0.0.1:{nats_tls.port}"
    ctx = client_ssl_context(nats_tls.ca_file)
    async with connected(nats_tls.tls_url, tls=ctx) as nc:
        await assert_echo(nc)
    # nats:// + a TLS context upgrades too; hostname verification via the localhost SAN.
    async with connected(f"nats://localhost:{nats_tls.port}", tls=ctx) as nc:
        await assert_jetstream_roundtrip(nc)
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        await connect_once(nats_tls.tls_url, tls=client_ssl_context(nats_tls.untrusted_ca_file))


async def test_mtls(nats_mtls: TlsNatsServer) -> None:
    good = client_ssl_context(nats_mtls.ca_file, nats_mtls.client_cert_file, nats_mtls.client_key_file)
    async with connected(nats_mtls.tls_url, tls=good) as nc:
        await assert_echo(nc)
    with pytest.raises(REJECTED):
        await connect_once(nats_mtls.tls_url, tls=client_ssl_context(nats_mtls.ca_file))
    await wait_for(
        lambda: "didn't provide a certificate" in nats_mtls.log_text(), 5, message="server never logged no-cert"
    )
    untrusted = client_ssl_context(
        nats_mtls.ca_file, nats_mtls.untrusted_client_cert_file, nats_mtls.untrusted_client_key_file
    )
    with pytest.raises(REJECTED):
        await connect_once(nats_mtls.tls_url, tls=untrusted)
    await wait_for(lambda: "unknown authority" in nats_mtls.log_text(), 5, message="server never logged the unknown CA")


# ---- cluster ----------------------------------------------------------------------------------------------


@pytest.mark.cluster
async def test_cluster_r3_stream_survives_stopping_its_leader(nats_cluster: NatsCluster) -> None:
    assert len(nats_cluster.nodes) == 3
    assert len(set(nats_cluster.urls)) == 3
    assert {n.name for n in nats_cluster.nodes} == {"n1", "n2", "n3"}
    assert len({n.store_dir for n in nats_cluster.nodes}) == 3
    assert nats_cluster.meta_leader() in {"n1", "n2", "n3"}

    async with connected(nats_cluster.urls) as nc:
        await assert_jetstream_roundtrip(nc, "REPL", replicas=3)
        info = await nc.jetstream().stream_info("REPL")
        assert info.cluster is not None
        leader = info.cluster.leader
        assert leader is not None
        assert len(info.cluster.replicas or []) == 2

    victim = nats_cluster.node(leader)
    victim.stop()
    survivors = [n.url for n in nats_cluster.nodes if n is not victim]

    async with connected(survivors) as nc:
        js = nc.jetstream()

        async def publish_ok() -> bool:
            ack = await js.publish("repl.b", b"after", timeout=1, headers={"Nats-Msg-Id": "after"})
            return ack.seq == 2

        await wait_for(publish_ok, 10, interval=0.1, message="R3 stream never accepted writes", ignore=REJECTED)
        assert (await js.get_msg("REPL", 1)).data == b"hello"
        assert (await js.get_msg("REPL", 2)).data == b"after"

    victim.restart()
    nats_cluster.wait_ready()
    async with connected(victim.url) as nc:
        info = await nc.jetstream().stream_info("REPL")
        assert info.state.messages == 2
