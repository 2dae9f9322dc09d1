"""Every NATS auth and TLS method against real nats-server processes: it connects, or it fails clearly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import nats.errors
import pytest

from nats_mcp.bus.connection import NatsConnection, connect_once
from nats_mcp.bus.connplan import plan_connection
from nats_mcp.bus.diagnose import tls_details
from nats_mcp.bus.errors import NatsConnectError
from tests.support.certs import make_nkey_user
from tests.support.env import settings_for
from tests.support.jwtauth import JwtNatsServer
from tests.support.natsserver import (
    NatsCluster,
    NatsServer,
    NKeyNatsServer,
    TlsNatsServer,
    TokenNatsServer,
    UserPassNatsServer,
    wait_for,
)


async def connect(tmp_path: Path, **env: str) -> nats.NATS:
    return await connect_once(plan_connection(settings_for(tmp_path, **env)))


async def assert_works(nc: nats.NATS, jetstream: bool = True) -> None:
    try:
        assert nc.is_connected
        if jetstream:
            info = await nc.jetstream().account_info()
            assert info.streams >= 0
        else:
            await nc.flush(timeout=2)
    finally:
        await nc.close()


async def refused(tmp_path: Path, **env: str) -> NatsConnectError:
    with pytest.raises(NatsConnectError) as info:
        nc = await connect(tmp_path, **env)
        await nc.close()
    return info.value


# ---- methods that connect -----------------------------------------------------------------------


async def test_plain_with_jetstream(tmp_path: Path, nats_server: NatsServer) -> None:
    await assert_works(await connect(tmp_path, NATS_URL=nats_server.url))


async def test_bare_host_port_means_nats(tmp_path: Path, nats_server: NatsServer) -> None:
    await assert_works(await connect(tmp_path, NATS_URL=f"127.0.0.1:{nats_server.port}"))


async def test_user_password_in_url(tmp_path: Path, nats_userpass: UserPassNatsServer) -> None:
    url = f"nats://{nats_userpass.user}:{nats_userpass.password}@127.0.0.1:{nats_userpass.port}"
    await assert_works(await connect(tmp_path, NATS_URL=url))


async def test_user_password_settings(tmp_path: Path, nats_userpass: UserPassNatsServer) -> None:
    nc = await connect(
        tmp_path, NATS_URL=nats_userpass.url, NATS_USER=nats_userpass.user, NATS_PASS=nats_userpass.password
    )
    await assert_works(nc)


async def test_password_from_file(tmp_path: Path, nats_userpass: UserPassNatsServer) -> None:
    secret = tmp_path / "pw"
    secret.write_text(nats_userpass.password + "\n")
    nc = await connect(
        tmp_path, NATS_URL=nats_userpass.url, NATS_USER=nats_userpass.user, NATS_MCP_NATS_PASSWORD_FILE=str(secret)
    )
    await assert_works(nc)


async def test_token_setting_and_token_in_url(tmp_path: Path, nats_token: TokenNatsServer) -> None:
    await assert_works(await connect(tmp_path, NATS_URL=nats_token.url, NATS_MCP_NATS_TOKEN=nats_token.token))
    await assert_works(await connect(tmp_path, NATS_URL=f"nats://{nats_token.token}@127.0.0.1:{nats_token.port}"))


async def test_nkey_seed_file(tmp_path: Path, nats_nkey: NKeyNatsServer) -> None:
    await assert_works(
        await connect(tmp_path, NATS_URL=nats_nkey.url, NATS_MCP_NATS_NKEY_SEED_FILE=str(nats_nkey.seed_file))
    )


async def test_tls_with_ca(tmp_path: Path, nats_tls: TlsNatsServer) -> None:
    nc = await connect(tmp_path, NATS_URL=nats_tls.tls_url, NATS_MCP_NATS_TLS_CA_FILE=str(nats_tls.ca_file))
    details = tls_details(nc)
    assert details is not None and details.startswith("TLSv1.")
    await assert_works(nc)


async def test_tls_minimum_13_is_negotiated(tmp_path: Path, nats_tls: TlsNatsServer) -> None:
    nc = await connect(
        tmp_path,
        NATS_URL=nats_tls.tls_url,
        NATS_MCP_NATS_TLS_CA_FILE=str(nats_tls.ca_file),
        NATS_MCP_NATS_TLS_MIN_VERSION="1.3",
    )
    assert (tls_details(nc) or "").startswith("TLSv1.3")
    await assert_works(nc)


async def test_tls_setting_upgrades_a_nats_url(tmp_path: Path, nats_tls: TlsNatsServer) -> None:
    nc = await connect(tmp_path, NATS_URL=nats_tls.url, NATS_MCP_NATS_TLS_CA_FILE=str(nats_tls.ca_file))
    assert tls_details(nc) is not None
    await assert_works(nc)


async def test_mutual_tls(tmp_path: Path, nats_mtls: TlsNatsServer) -> None:
    nc = await connect(
        tmp_path,
        NATS_URL=nats_mtls.tls_url,
        NATS_MCP_NATS_TLS_CA_FILE=str(nats_mtls.ca_file),
        NATS_MCP_NATS_TLS_CERT_FILE=str(nats_mtls.client_cert_file),
        NATS_MCP_NATS_TLS_KEY_FILE=str(nats_mtls.client_key_file),
    )
    await assert_works(nc)


async def test_websocket(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "ws", extra_config='websocket {\n  listen: "127.0.0.1:-1"\n  no_tls: true\n}')
    with server.start():
        ws = server.ports.get("websocket") or []
        assert ws, f"no websocket port in {server.ports}"
        url = ws[0].replace("http://", "ws://")
        await assert_works(await connect(tmp_path, NATS_URL=url))


async def test_jetstream_domain(tmp_path: Path) -> None:
    server = NatsServer(
        tmp_path / "dom",
        jetstream=False,
        extra_config=f"jetstream {{\n  store_dir: {str(tmp_path / 'js')!r}\n  domain: hub\n}}",
    )
    with server.start():
        async with NatsConnection(
            settings_for(tmp_path, NATS_URL=server.url, NATS_MCP_NATS_JETSTREAM_DOMAIN="hub")
        ) as conn:
            assert await conn.wait_connected(10)
            info = await conn.jetstream.account_info()
            assert info.domain == "hub"


@pytest.mark.cluster
async def test_cluster_urls_fail_over(tmp_path: Path, nats_cluster: NatsCluster) -> None:
    urls = ",".join(nats_cluster.urls)
    settings = settings_for(tmp_path, NATS_URL=urls, NATS_MCP_NATS_RECONNECT_BACKOFF_MIN_S="0.05")
    async with NatsConnection(settings) as conn:
        assert await conn.wait_connected(10)
        js = conn.jetstream
        await js.add_stream(name="R3", subjects=["r3.>"], num_replicas=3)

        async def published() -> bool:  # a new R3 stream answers once its leader is elected (no response before)
            await js.publish("r3.a", b"1", timeout=2, headers={"Nats-Msg-Id": "r3-a"})  # retries dedupe
            return True

        await wait_for(
            published, 20, interval=0.1, message="the R3 stream never acknowledged", ignore=(nats.errors.Error,)
        )
        connected = conn.client.connected_url
        assert connected is not None
        node = next(n for n in nats_cluster.nodes if n.port == connected.port)
        node.stop()
        await asyncio.wait_for(_until(lambda: conn.connected and conn.client.connected_url.port != node.port), 20)
        assert conn.reconnects >= 1

        async def stored() -> bool:
            try:
                return (await conn.jetstream.stream_info("R3")).state.messages == 1
            except Exception:
                return False

        await asyncio.wait_for(_until_async(stored), 20)


async def _until(predicate) -> None:  # type: ignore[no-untyped-def]
    while not predicate():
        await asyncio.sleep(0.05)


async def _until_async(predicate) -> None:  # type: ignore[no-untyped-def]
    while not await predicate():
        await asyncio.sleep(0.1)


# ---- failures: clear, named, secret-free, never plaintext ----------------------------------------------


async def test_wrong_password_names_method_without_secret(tmp_path: Path, nats_userpass: UserPassNatsServer) -> None:
    err = await refused(tmp_path, NATS_URL=nats_userpass.url, NATS_USER=nats_userpass.user, NATS_PASS="WrongPass-123")
    assert err.kind == "auth" and "user/password" in str(err)
    assert "WrongPass-123" not in str(err) and nats_userpass.password not in str(err)
    err = await refused(tmp_path, NATS_URL=f"nats://{nats_userpass.user}:WrongPass-456@127.0.0.1:{nats_userpass.port}")
    assert err.kind == "auth" and "user/password (URL)" in str(err) and "WrongPass-456" not in str(err)


async def test_wrong_token(tmp_path: Path, nats_token: TokenNatsServer) -> None:
    err = await refused(tmp_path, NATS_URL=nats_token.url, NATS_MCP_NATS_TOKEN="not-the-token-xyz")
    assert err.kind == "auth" and "token" in str(err) and "not-the-token-xyz" not in str(err)
    assert nats_token.token not in str(err)


async def test_no_credentials_against_auth_server(tmp_path: Path, nats_token: TokenNatsServer) -> None:
    err = await refused(tmp_path, NATS_URL=nats_token.url)
    assert err.kind == "auth" and "no credentials" in str(err)


async def test_wrong_nkey(tmp_path: Path, nats_nkey: NKeyNatsServer) -> None:
    other = make_nkey_user(tmp_path / "other")
    err = await refused(tmp_path, NATS_URL=nats_nkey.url, NATS_MCP_NATS_NKEY_SEED_FILE=str(other.seed_file))
    assert err.kind == "auth" and "nkey" in str(err) and other.seed not in str(err)


async def test_tls_required_server_with_nats_url_is_refused(tmp_path: Path, nats_tls: TlsNatsServer) -> None:
    err = await refused(tmp_path, NATS_URL=nats_tls.url)
    assert err.kind == "tls" and "requires TLS" in str(err) and "tls://" in str(err)


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
async def test_untrusted_server_certificate(tmp_path: Path, nats_tls: TlsNatsServer) -> None:
    err = await refused(tmp_path, NATS_URL=nats_tls.tls_url, NATS_MCP_NATS_TLS_CA_FILE=str(nats_tls.untrusted_ca_file))
    assert err.kind == "tls" and "not trusted" in str(err)
    err = await refused(tmp_path, NATS_URL=nats_tls.tls_url)  # system trust store only
    assert err.kind == "tls" and "not trusted" in str(err)


async def test_mtls_without_or_with_untrusted_client_cert(tmp_path: Path, nats_mtls: TlsNatsServer) -> None:
    err = await refused(tmp_path, NATS_URL=nats_mtls.tls_url, NATS_MCP_NATS_TLS_CA_FILE=str(nats_mtls.ca_file))
    assert err.kind == "tls"
    err = await refused(
        tmp_path,
        NATS_URL=nats_mtls.tls_url,
        NATS_MCP_NATS_TLS_CA_FILE=str(nats_mtls.ca_file),
        NATS_MCP_NATS_TLS_CERT_FILE=str(nats_mtls.untrusted_client_cert_file),
        NATS_MCP_NATS_TLS_KEY_FILE=str(nats_mtls.untrusted_client_key_file),
    )
    assert err.kind == "tls"


async def test_tls_url_against_plaintext_server_is_refused(tmp_path: Path, nats_token: TokenNatsServer) -> None:
    err = await refused(tmp_path, NATS_URL=nats_token.tls_url, NATS_MCP_NATS_TOKEN=nats_token.token)
    assert err.kind == "tls" and "does not offer TLS" in str(err) and nats_token.token not in str(err)


async def test_tls_url_never_sends_credentials_in_plaintext(tmp_path: Path) -> None:
    """A plaintext peer that looks like NATS (INFO, auth required) must never receive CONNECT."""
    received = bytearray()
    got_data = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'INFO {"server_id":"X","version":"2.15.1","auth_required":true,"max_payload":1048576}\r\n')
        await writer.drain()
        try:
            while chunk := await reader.read(4096):
                received.extend(chunk)
                got_data.set()
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        err = await refused(tmp_path, NATS_URL=f"tls://127.0.0.1:{port}", NATS_MCP_NATS_TOKEN="plaintext-canary-token")
    assert err.kind == "tls"
    assert b"CONNECT" not in received and b"plaintext-canary-token" not in received


async def test_unreachable_names_server_and_hints(tmp_path: Path, nats_server: NatsServer) -> None:
    url = nats_server.url
    nats_server.stop()
    err = await refused(tmp_path, NATS_URL=url)
    assert err.kind == "unreachable" and url in str(err) and "doctor" in (err.hint or "")


# ---- decentralized JWT (creds file), made at test time without nsc --------------------------------------


async def test_creds_file(tmp_path: Path, nats_jwt: JwtNatsServer) -> None:
    await assert_works(
        await connect(tmp_path, NATS_URL=nats_jwt.url, NATS_MCP_NATS_CREDS_FILE=str(nats_jwt.creds_file))
    )


async def test_untrusted_and_expired_creds_are_refused(tmp_path: Path, nats_jwt: JwtNatsServer) -> None:
    for creds in (nats_jwt.untrusted_creds_file, nats_jwt.expired_creds_file):
        err = await refused(tmp_path, NATS_URL=nats_jwt.url, NATS_MCP_NATS_CREDS_FILE=str(creds))
        assert err.kind == "auth"
        assert "creds file (JWT)" in str(err)
        seed = creds.read_text().split("-----BEGIN USER NKEY SEED-----")[1].split()[0]
        assert seed not in str(err)


async def test_tls_is_used_where_the_server_merely_offers_it(tmp_path: Path) -> None:
    """allow_non_tls servers send tls_available: a client that wants TLS upgrades instead of staying plain."""
    server = TlsNatsServer(tmp_path / "mixed", extra_config="allow_non_tls: true")
    with server.start():
        nc = await connect(tmp_path, NATS_URL=server.tls_url, NATS_MCP_NATS_TLS_CA_FILE=str(server.ca_file))
        assert tls_details(nc) is not None
        await assert_works(nc)
        plain = await connect(tmp_path, NATS_URL=server.url)  # nobody asked for TLS: plaintext is allowed here
        assert tls_details(plain) is None
        await assert_works(plain)


async def test_tls_server_name_is_what_the_certificate_is_checked_against(
    tmp_path: Path, nats_tls: TlsNatsServer
) -> None:
    ca = str(nats_tls.ca_file)
    nc = await connect(
        tmp_path, NATS_URL=nats_tls.tls_url, NATS_MCP_NATS_TLS_CA_FILE=ca, NATS_MCP_NATS_TLS_SERVER_NAME="localhost"
    )
    await assert_works(nc)
    err = await refused(
        tmp_path,
        NATS_URL=nats_tls.tls_url,
        NATS_MCP_NATS_TLS_CA_FILE=ca,
        NATS_MCP_NATS_TLS_SERVER_NAME="nats.example.org",
    )
    assert err.kind == "tls"
    assert "not trusted" in str(err)
