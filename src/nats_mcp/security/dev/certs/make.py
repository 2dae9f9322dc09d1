"""The development-certificate making boundary: the CA, server and client certificates, policy and README, in memory.

EC P-256 with ECDSA-SHA256 and PKCS#8 keys is what grpcio (BoringSSL), OpenSSL/Python ``ssl`` and nats-server (Go)
all accept. Nothing here touches the filesystem (:mod:`nats_mcp.security.dev.certs.files` writes the set).
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nats_mcp.security.dev.certs.spec import (
    CA_CERT,
    CA_COMMON_NAME,
    CA_KEY,
    CLOCK_SKEW,
    DEV_LABEL,
    DEV_ORGANIZATION,
    POLICY,
    README,
    SERVER_CERT,
    SERVER_KEY,
    BundleFile,
    DevCertBundle,
    DevCertSpec,
    client_cert_path,
    client_key_path,
)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    sans: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _fingerprint(cert: x509.Certificate) -> str:
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def issue(spec: DevCertSpec, now: datetime.datetime | None = None) -> DevCertBundle:
    """Make the CA, the server certificate and one certificate per client, all in memory."""
    now = now or datetime.datetime.now(datetime.UTC)
    not_before = (now - CLOCK_SKEW).replace(microsecond=0)
    not_after = (now + datetime.timedelta(days=spec.days)).replace(microsecond=0)

    ca_key = _key()
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = [BundleFile(CA_CERT, _cert_pem(ca_cert), False), BundleFile(CA_KEY, _key_pem(ca_key), True)]

    server_key = _key()
    server_sans: list[x509.GeneralName] = [x509.DNSName(n) for n in spec.dns_names]
    server_sans += [x509.IPAddress(ip) for ip in spec.ips]
    server_cert = _leaf(
        ca_cert,
        ca_key,
        server_key,
        spec.dns_names[0],
        server_sans,
        ExtendedKeyUsageOID.SERVER_AUTH,
        not_before,
        not_after,
    )
    files += [
        BundleFile(SERVER_CERT, _cert_pem(server_cert), False),
        BundleFile(SERVER_KEY, _key_pem(server_key), True),
    ]

    for client in spec.clients:
        key = _key()
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spec.client_identity(client))]
        cert = _leaf(ca_cert, ca_key, key, client, sans, ExtendedKeyUsageOID.CLIENT_AUTH, not_before, not_after)
        files += [
            BundleFile(client_cert_path(client), _cert_pem(cert), False),
            BundleFile(client_key_path(client), _key_pem(key), True),
        ]

    fingerprint = _fingerprint(ca_cert)
    files.append(BundleFile(POLICY, policy_text(spec).encode(), False))
    files.append(BundleFile(README, readme_text(spec, not_after, fingerprint).encode(), False))
    return DevCertBundle(
        spec=spec, files=tuple(files), not_before=not_before, not_after=not_after, ca_fingerprint=fingerprint
    )


def agent_policy(principal_pattern: str, header: str = "") -> str:
    """A policy where every mTLS client whose identity matches ``principal_pattern`` may use every coordination tool
    in every namespace, as its own agent (development, tests and benchmarks)."""
    return f"""{header}version: 1
roles:
  agent:
    tools: ["*"]
    namespaces: ["*"]
    channels: {{read: ["*"], send: ["*"]}}
    capabilities: {{broadcast: ["*"], claim: ["*"]}}
    reservations: ["**"]
    admin: [dlq, reservations]
principals:
  - {{method: mtls, subject: "{principal_pattern}", roles: [agent]}}
"""


def policy_text(spec: DevCertSpec) -> str:
    """The development policy (``security.policy_file``) written next to the certificates."""
    header = (
        f"# Development policy made by `nats-mcp certs init` ({DEV_LABEL}): every client certificate of this\n"
        "# trust domain may use every coordination tool in every namespace, as its own agent.\n"
    )
    return agent_policy(spec.principal_pattern, header)


def readme_text(spec: DevCertSpec, not_after: datetime.datetime, fingerprint: str) -> str:
    """The README.txt written next to the certificates."""
    client = spec.clients[0]
    client_lines = "\n".join(
        f"  {client_cert_path(c)}, {Path(client_key_path(c)).name}\n"
        f"                                client certificate: {spec.client_identity(c)}"
        for c in spec.clients
    )
    return f"""\
*** DEVELOPMENT CERTIFICATES - {DEV_LABEL} ***

Made by `nats-mcp certs init` for trying the gRPC transport's mutual TLS on one machine.
The CA's private key (ca-key.pem) sits next to the certificates without a passphrase: anyone who can
read it can mint a client certificate this server accepts. Never trust this CA anywhere else, never
add it to a system trust store, never commit these files; use your organisation's PKI (or SPIFFE/SPIRE)
for anything real.

Valid until {not_after:%Y-%m-%d %H:%M}Z. CA SHA-256 fingerprint:
  {fingerprint}

Files
  ca.pem, ca-key.pem            the development CA (EC P-256)
  server.pem, server-key.pem    server certificate: DNS {", ".join(spec.dns_names)};
                                IP {", ".join(str(i) for i in spec.ips)}
{client_lines}

From this directory:

Server (mutual TLS; client certificates verified against ca.pem; policy.yaml gives them the agent role):
  NATS_MCP_SECURITY_POLICY_FILE=policy.yaml \\
  nats-mcp serve --transport grpc --tls-cert server.pem --tls-key server-key.pem --client-ca ca.pem

Client (the stdio bridge for Claude Code, Claude Desktop or any stdio MCP client):
  nats-mcp bridge --grpc localhost:PORT --ca ca.pem --cert {client_cert_path(client)} --key {client_key_path(client)}

A client certificate's identity is its SPIFFE ID; the policy (policy.yaml here) gives it roles:
  principals:
    - {{method: mtls, subject: "{spec.principal_pattern}", roles: [agent]}}

Make a fresh set (a new CA: certificates of the old one stop working) with
  nats-mcp certs init DIR --force
"""
