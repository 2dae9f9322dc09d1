"""mTLS identity from real client certificates: made at test time with cryptography (URI SANs, which trustme cannot
make), presented in a real TLS handshake on loopback, and read from the server side's ``getpeercert()``."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nats_mcp.security.authn import Credentials
from nats_mcp.security.authn.mtls import MtlsAuthenticator, cert_identity
from nats_mcp.security.errors import AuthenticationError
from nats_mcp.security.policy import Policy, cross_provider_warnings, parse_policy
from nats_mcp.security.principal import agent_guid

SPIFFE = "spiffe://example.org/ns/prod/sa/agent-7"
POLICY = f"""
version: 1
roles: {{agent: {{tools: ["*"], namespaces: ["*"]}}}}
principals: [{{method: mtls, subject: "{SPIFFE}", roles: [agent]}}]
"""
"""A policy naming the victim's SPIFFE ID, as policy files did before issue 19: it keeps working."""


class Ca:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nats-mcp test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.file = directory / "ca.pem"
        self.file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, cn: str | None, sans: list[x509.GeneralName], usage: Any) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        cert_file, key_file = self.dir / f"{name}-cert.pem", self.dir / f"{name}-key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_file, key_file


@pytest.fixture
def ca(tmp_path: Path) -> Ca:
    return Ca(tmp_path)


async def handshake(ca: Ca, client: tuple[Path, Path] | None, *, require: bool = True) -> Any:
    """Run a real TLS handshake on loopback; return what the server's ``getpeercert()`` saw."""
    server_cert = ca.issue(
        "server",
        "localhost",
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        ExtendedKeyUsageOID.SERVER_AUTH,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.file))
    server_ctx.load_cert_chain(*map(str, server_cert))
    server_ctx.verify_mode = ssl.CERT_REQUIRED if require else ssl.CERT_OPTIONAL
    seen: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not seen.done():
            seen.set_result(writer.get_extra_info("peercert"))
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca.file))
    if client is not None:
        client_ctx.load_cert_chain(*map(str, client))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
        assert await reader.read() == b"ok"
        writer.close()
        return await asyncio.wait_for(seen, 10)
    finally:
        server.close()
        await server.wait_closed()


def client_cert(ca: Ca, cn: str | None, *sans: x509.GeneralName) -> tuple[Path, Path]:
    return ca.issue("client", cn, list(sans), ExtendedKeyUsageOID.CLIENT_AUTH)


async def principal_of(peercert: Any, peer: str = "127.0.0.1") -> Any:
    return await MtlsAuthenticator().authenticate(Credentials(peer_cert=peercert, peer=peer, agent="a1"))


async def test_spiffe_id_wins(ca: Ca) -> None:
    cert = client_cert(
        ca,
        "agent-7.example.org",
        x509.DNSName("agent-7.example.org"),
        x509.UniformResourceIdentifier("https://agents.example.org/7"),
        x509.UniformResourceIdentifier(SPIFFE),
    )
    principal = await principal_of(await handshake(ca, cert))
    assert principal.subject == SPIFFE
    assert principal.cert_identity == SPIFFE
    assert principal.issuer == "mtls" and principal.method == "mtls"
    assert principal.peer == "127.0.0.1" and principal.agent == "a1"
    assert principal.claims["identity_source"] == "spiffe"
    assert principal.roles == frozenset()  # roles come from the policy, never from the certificate


async def test_other_uri_then_dns_then_common_name(ca: Ca) -> None:
    # each source has its own namespace (issue 19 #3): prefixed subjects, issuers other than "mtls"
    uri = client_cert(ca, "cn-name", x509.DNSName("dns.example.org"), x509.UniformResourceIdentifier("urn:agent:1"))
    principal = await principal_of(await handshake(ca, uri))
    assert (principal.subject, principal.issuer) == ("uri:urn:agent:1", "mtls-uri")
    assert principal.cert_identity == "urn:agent:1"
    dns = client_cert(ca, "cn-name", x509.DNSName("dns.example.org"), x509.DNSName("second.example.org"))
    principal = await principal_of(await handshake(ca, dns))
    assert (principal.subject, principal.issuer) == ("dns:dns.example.org", "mtls-dns")
    cn = client_cert(ca, "cn-only-agent")
    principal = await principal_of(await handshake(ca, cn))
    assert (principal.subject, principal.issuer) == ("cn:cn-only-agent", "mtls-cn")
    assert principal.claims["identity_source"] == "cn"


async def test_no_client_certificate_is_missing_credentials(ca: Ca) -> None:
    peercert = await handshake(ca, None, require=False)
    assert not peercert
    with pytest.raises(AuthenticationError) as info:
        await principal_of(peercert)
    assert info.value.reason == "missing_credentials"
    with pytest.raises(AuthenticationError) as info:
        await principal_of({})  # what getpeercert() gives for an unverified certificate
    assert info.value.reason == "missing_credentials"


async def test_a_certificate_naming_nothing_usable_is_refused() -> None:
    for cert in (
        {"subject": ((("organizationName", "x"),),)},
        {"subjectAltName": (("DNS", "evil\nINFO forged log line"),)},
        {"subjectAltName": (("URI", "spiffe://" + "a" * 2000),)},
    ):
        with pytest.raises(AuthenticationError) as info:
            await principal_of(cert)
        assert info.value.reason == "malformed"


def test_identity_order_on_getpeercert_dicts() -> None:
    cert: dict[str, Any] = {
        "subject": ((("commonName", "cn"),),),
        "subjectAltName": (("DNS", "d.example"), ("URI", "https://u.example"), ("URI", "SPIFFE://td/x")),
    }
    assert cert_identity(cert) == ("SPIFFE://td/x", "spiffe")
    cert["subjectAltName"] = (("email", "a@b"), ("IP Address", "10.0.0.1"))
    assert cert_identity(cert) == ("cn", "cn")
    assert cert_identity({"subjectAltName": "not a tuple"}) is None


async def test_a_dns_san_or_cn_spelling_a_spiffe_id_is_not_that_principal(ca: Ca) -> None:
    # issue 19 #3: the attacker's CA-signed certificate names the victim's SPIFFE ID in a DNS SAN, or as its CN
    victim = await principal_of(await handshake(ca, client_cert(ca, None, x509.UniformResourceIdentifier(SPIFFE))))
    policy = Policy(parse_policy(POLICY))
    assert policy.roles_of(victim)
    for forged in (client_cert(ca, None, x509.DNSName(SPIFFE)), client_cert(ca, SPIFFE)):
        attacker = await principal_of(await handshake(ca, forged))
        assert attacker.cert_identity == SPIFFE  # the same string...
        assert attacker.subject != victim.subject and attacker.issuer != victim.issuer  # ...another principal
        assert attacker.key != victim.key and agent_guid(attacker, "a1") != agent_guid(victim, "a1")
        assert not policy.roles_of(attacker)  # the policy naming the SPIFFE ID grants it nothing
        assert not policy.tool_allowed(attacker, "channels_send", ())
    # a URI SAN that is not SPIFFE cannot pose as one either
    uri = {"subjectAltName": (("URI", "dns:" + SPIFFE),)}
    assert (await principal_of(uri)).subject == "uri:dns:" + SPIFFE
    assert (await principal_of({"subjectAltName": (("DNS", SPIFFE),)})).subject == "dns:" + SPIFFE


def test_policy_check_warns_on_rules_matching_across_providers_or_sources() -> None:
    doc = parse_policy("""
version: 1
roles: {agent: {tools: ["*"]}}
principals:
  - {method: mtls, subject: "spiffe://example.org/agent/*", roles: [agent]}
  - {issuer: "https://idp.example.com", subject: "ci-*", roles: [agent]}
  - {method: apikey, subject: "deployer", roles: [agent]}
  - {method: mtls, subject: "dns:agent-7.example.org", roles: [agent]}
  - {subject: "alice", roles: [agent]}
  - {method: "*", subject: "bob", roles: [agent]}
  - {method: mtls, subject: "*agent-7*", roles: [agent]}
  - {method: mtls, subject: "agent-7.example.org", roles: [agent]}
  - {method: mtls, roles: [agent]}
""")
    warnings = cross_provider_warnings(doc)
    assert [w.split(":")[0] for w in warnings] == [f"principals[{i}]" for i in (4, 5, 6, 7, 8)], warnings
    assert "every provider" in warnings[0] and "every provider" in warnings[1]
    assert "every source" in warnings[2] and "matches no certificate" in warnings[3]
