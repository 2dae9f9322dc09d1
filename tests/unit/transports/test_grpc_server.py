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
