"""Boundary of the gRPC server's own checks: peer facts from the TLS layer, metadata against the body, options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import mcp_types as types
import pytest
import trustme

from nats_mcp.config.grpc import GrpcSettings
from nats_mcp.config.settings import Settings
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.authn.mtls import cert_identity
from nats_mcp.security.guard import Guard
from nats_mcp.security.policy import Policy
from nats_mcp.transports.grpc import server as rpc
from nats_mcp.transports.grpc import tls
from tests.support.grpc_server import Pki


class Records:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def record(self, event: AuditEvent) -> None:
        self.seen.append((event.kind, event.fields()))


def service(records: Records) -> rpc.McpGrpcService:
    from nats_mcp.api.server import build_server

    settings = Settings()
    guard = Guard(settings.security, Policy.load(None), records)  # type: ignore[arg-type]
    return rpc.McpGrpcService(build_server(), rpc.Admission(guard, settings))


@pytest.mark.parametrize(
    ("peer", "address"),
    [("ipv4:127.0.0.1:5000", "127.0.0.1"), ("ipv6:%5B::1%5D:5000", "::1"), ("unix:/tmp/sock", None)],
)
def test_peer_address(peer: str, address: str | None) -> None:
    assert tls.peer_address(peer) == address


def test_peer_certificate_identity_prefers_spiffe(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path)
    leaf = pki.issue("agent-7", uris=["spiffe://example.org/agent/7"], dns=["agent7.example.org"], ips=["10.0.0.7"])
    cert = tls.peer_cert(leaf.cert_file.read_bytes())
    assert cert_identity(cert) == ("spiffe://example.org/agent/7", "spiffe")
    assert ("DNS", "agent7.example.org") in cert["subjectAltName"]  # type: ignore[operator]
    assert ("IP Address", "10.0.0.7") in cert["subjectAltName"]  # type: ignore[operator]
    dns_only = tls.peer_cert(pki.issue("dns-holder", dns=["svc.example.org"]).cert_file.read_bytes())
    assert cert_identity(dns_only) == ("svc.example.org", "dns")
    plain = tls.peer_cert(pki.issue("cn-only").cert_file.read_bytes())
    assert not plain.get("subjectAltName")  # no SAN extension: the shape real CAs issue for CN-only certificates
    assert cert_identity(plain) == ("cn-only", "cn")


def _request(method: str, params: dict[str, Any]) -> types.JSONRPCMessage:
    message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return types.jsonrpc_message_adapter.validate_python(message)


def test_metadata_must_agree_with_the_body() -> None:
    from nats_mcp.security.principal import Principal

    records = Records()
    svc = service(records)
    me = Principal(subject="s", issuer="i", method="mtls")
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}
    call = _request("tools/call", {"name": "warp_handle_get", "_meta": meta})
    svc.check_metadata(
        me, {"mcp-method": "tools/call", "mcp-name": "warp_handle_get", "mcp-protocol-version": "2026-07-28"}, call
    )
    read = _request("resources/read", {"uri": "nats-mcp://channels/x"})
    svc.check_metadata(me, {"mcp-resource-uri": "nats-mcp://channels/x"}, read)
    for wrong in (
        {"mcp-method": "tools/list"},
        {"mcp-name": "warp_other"},
        {"mcp-protocol-version": "2025-11-25"},
        {"mcp-resource-uri": "nats-mcp://channels/x"},
    ):
        with pytest.raises(rpc.CallRefused) as refused:
            svc.check_metadata(me, wrong, call)
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [fields["reason"] for _, fields in records.seen] == ["header_mismatch"] * 4


def test_frames_over_the_cap_or_not_jsonrpc_are_refused_and_audited() -> None:
    from nats_mcp.security.principal import Principal

    records = Records()
    svc = service(records)
    me = Principal(subject="s", issuer="i", method="mtls")
    cap = svc.grpc_settings.max_message_bytes
    with pytest.raises(rpc.CallRefused) as refused:
        svc.check_frame(me, b"x" * (cap + 1))
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(rpc.CallRefused) as refused:
        svc.check_frame(me, b'{"hello": "world"}')
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [(k, f["reason"]) for k, f in records.seen] == [
        ("limit_exceeded", "frame_too_large"),
        ("denied", "not_jsonrpc"),
    ]
    message = svc.check_frame(me, b'{"jsonrpc":"2.0","id":3,"method":"ping"}')
    assert isinstance(message, types.JSONRPCRequest)


def test_server_options_follow_the_settings() -> None:
    options = dict(tls.server_options(GrpcSettings(max_message_bytes=2048, max_connection_age_s=60)))
    assert options["grpc.max_receive_message_length"] == 2 * 2048 + 1024
    assert options["grpc.max_connection_age_ms"] == 60_000
    assert "grpc.max_connection_idle_ms" not in options


def test_credentials_need_a_client_ca_when_client_certificates_are_required(tmp_path: Path) -> None:
    leaf = Pki.create(tmp_path).server()
    with pytest.raises(ValueError, match="client_ca_file"):
        tls.server_credentials(GrpcSettings(tls_cert_file=leaf.cert_file, tls_key_file=leaf.key_file))
    assert (
        tls.server_credentials(
            GrpcSettings(tls_cert_file=leaf.cert_file, tls_key_file=leaf.key_file, client_ca_file=leaf.ca_file)
        )
        is not None
    )


def test_certificate_reloader_serves_changed_files(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path)
    leaf = pki.server()
    reloader = tls.CertificateReloader(
        GrpcSettings(tls_cert_file=leaf.cert_file, tls_key_file=leaf.key_file, client_ca_file=leaf.ca_file)
    )
    assert reloader() is None  # unchanged
    pki.issue("server", dns=["localhost"], ips=["127.0.0.1"])  # rotated in place
    assert reloader() is not None
    assert reloader() is None


def test_a_rotation_caught_half_way_is_not_taken() -> None:
    check_key_pair = tls.check_key_pair
    ca = trustme.CA()
    old, new = ca.issue_cert("localhost"), ca.issue_cert("localhost")
    chain, key = new.cert_chain_pems[0].bytes(), new.private_key_pem.bytes()
    check_key_pair(chain, key, ca.cert_pem.bytes())  # a whole pair is taken
    with pytest.raises(ValueError, match="not for this key"):
        check_key_pair(old.cert_chain_pems[0].bytes(), key, None)  # the new key, the old certificate
    # a truncated certificate, a truncated key, an empty CA file
    for args in ((chain[:100], key, None), (chain, key[:60], None), (chain, key, b"")):
        with pytest.raises(ValueError, match="Unable to load PEM"):
            check_key_pair(*args)


class Peer:
    """The part of a ``grpc.aio.ServicerContext`` admission reads: metadata, peer, TLS auth context."""

    def __init__(self, peer: str, pem: bytes, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._peer, self.metadata = peer, metadata
        self.auth = {"ssl_tls_version": [b"TLSv1.3"], "x509_pem_cert": [pem]}

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def peer(self) -> str:
        return self._peer

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.auth


class Counting:
    """The mTLS authenticator, counting what it resolves; a bearer ``good`` is a principal too."""

    def __init__(self) -> None:
        from nats_mcp.security.authn.mtls import MtlsAuthenticator

        self.mtls = MtlsAuthenticator()
        self.calls = 0

    async def authenticate(self, credentials: Any) -> Any:
        from nats_mcp.security.errors import AuthenticationError
        from nats_mcp.security.principal import Principal

        self.calls += 1
        if credentials.bearer is None:
            return await self.mtls.authenticate(credentials)
        if credentials.bearer != "good":
            raise AuthenticationError("bad_signature")
        return Principal(
            subject="bearer", issuer="test", method="jwt", roles=frozenset({"agent"}), peer=credentials.peer
        )


async def test_a_connection_certificate_identity_is_resolved_once_bearers_and_refusals_every_call(
    tmp_path: Path,
) -> None:
    from nats_mcp.security.dev.certs import agent_policy
    from nats_mcp.transports.grpc.admission import CallRefused, Gatekeeper, KnownPeers

    policy = tmp_path / "policy.yaml"
    policy.write_text(agent_policy("spiffe://nats-mcp.test/agent/*"))
    records, provider = Records(), Counting()
    settings = Settings()
    guard = Guard(settings.security, Policy.load(policy), records)  # type: ignore[arg-type]
    gate = Gatekeeper(rpc.Admission(guard, settings, provider))
    pki = Pki.create(tmp_path / "pki")
    pem = pki.client("agent-1").cert_file.read_bytes()
    other = pki.client("agent-2").cert_file.read_bytes()

    # the same connection (address and port), certificate and agent: resolved once, the same identity after
    first = await gate.admit(Peer("ipv4:127.0.0.1:5000", pem))  # type: ignore[arg-type]
    again = await gate.admit(Peer("ipv4:127.0.0.1:5000", pem))  # type: ignore[arg-type]
    assert again is first and provider.calls == 1
    assert first.principal.subject == "spiffe://nats-mcp.test/agent/agent-1" and first.caller is not None
    # another connection, another certificate or another agent is resolved for itself
    assert (await gate.admit(Peer("ipv4:127.0.0.1:5001", pem))).caller is not None  # type: ignore[arg-type]
    second = await gate.admit(Peer("ipv4:127.0.0.1:5000", other))  # type: ignore[arg-type]
    assert second.principal.subject.endswith("/agent-2")
    named = await gate.admit(Peer("ipv4:127.0.0.1:5000", pem, (("x-nats-mcp-agent", "helper"),)))  # type: ignore[arg-type]
    assert named.caller is not None and named.caller.guid != first.caller.guid
    assert provider.calls == 4
    # a bearer credential is resolved on every call (a key or token may be revoked at any moment) ...
    bearer = (("authorization", "Bearer good"),)
    for _ in range(2):
        assert (await gate.admit(Peer("ipv4:127.0.0.1:5000", pem, bearer))).principal.subject == "bearer"  # type: ignore[arg-type]
    assert provider.calls == 6
    with pytest.raises(CallRefused) as refused:
        await gate.admit(Peer("ipv4:127.0.0.1:5000", pem, (("authorization", "Bearer forged"),)))  # type: ignore[arg-type]
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED and provider.calls == 7
    # ... and a refused identity (an agent name the policy cannot bind) is refused and audited on every call
    bad = (("x-nats-mcp-agent", "no such/agent"),)
    for _ in range(2):
        with pytest.raises(CallRefused) as refused:
            await gate.admit(Peer("ipv4:127.0.0.1:5000", pem, bad))  # type: ignore[arg-type]
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert provider.calls == 9
    assert [fields["reason"] for kind, fields in records.seen if kind == "denied"] == ["agent_denied"] * 2
    # the TLS version is checked on every call, cached identity or not
    old = Peer("ipv4:127.0.0.1:5000", pem)
    old.auth["ssl_tls_version"] = [b"TLSv1.2"]
    gate.grpc_settings = GrpcSettings(min_tls="1.3")
    with pytest.raises(CallRefused) as refused:
        await gate.admit(old)  # type: ignore[arg-type]
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED

    # an entry lives for its time only, counted from when its resolution began
    known = KnownPeers(ttl_s=0.0)
    known.put(("ipv4:127.0.0.1:5000", pem, None), first, since=0.0)
    assert known.get(("ipv4:127.0.0.1:5000", pem, None)) is None
    assert gate.known.ttl_s == min(60.0, settings.security.lockout.window_s)
