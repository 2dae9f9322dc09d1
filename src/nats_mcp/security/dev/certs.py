"""The development-certificate boundary: a throwaway CA with server and client certificates for mTLS, and their files.

``nats-mcp certs init DIR`` makes, for the quick start and the docs, everything the gRPC transport's mutual TLS
needs on one machine::

    DIR/ca.pem, ca-key.pem            a development CA (EC P-256), labelled NOT FOR PRODUCTION in its subject
    DIR/server.pem, server-key.pem    serverAuth; SANs localhost, 127.0.0.1, ::1 and any names/IPs given
    DIR/clients/NAME.pem, NAME-key.pem  clientAuth; SAN URI spiffe://<trust domain>/agent/NAME, CN NAME
    DIR/README.txt                    the same warning, what each file is and how to use it

EC P-256 with ECDSA-SHA256 and PKCS#8 keys is what grpcio (BoringSSL), OpenSSL/Python ``ssl`` and nats-server (Go)
all accept. ``make_spec`` validates every input (nothing is made from a name it refused), ``issue`` builds the whole
set in memory, and ``write_bundle`` stages it in a private temporary directory inside DIR and only then moves each
file into place, refusing to replace an existing file unless told to: a refusal or a failure leaves nothing behind.
Private keys are mode 0600 from creation, the directories this module creates 0700. The identity a client
certificate yields is read back by ``nats_mcp.security.authn.mtls.cert_identity`` (the SPIFFE URI SAN first).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import ipaddress
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nats_mcp.core.names import InvalidNameError, validate_name

DEV_LABEL = "NOT FOR PRODUCTION"
CA_COMMON_NAME = f"nats-mcp development CA - {DEV_LABEL}"
DEV_ORGANIZATION = f"nats-mcp development - {DEV_LABEL}"
DEFAULT_TRUST_DOMAIN = "nats-mcp.dev"
DEFAULT_CLIENT = "agent-1"
DEFAULT_DAYS = 30
MAX_DAYS = 825
"""The CA/Browser Forum's old ceiling for leaf certificates; a development CA has no reason to outlive it."""
MAX_CLIENTS = 100
MAX_SERVER_NAMES = 100
CLOCK_SKEW = datetime.timedelta(minutes=5)
"""Certificates start this long before "now", so a peer whose clock is a little behind accepts them at once."""

BASE_DNS_NAMES: tuple[str, ...] = ("localhost",)
BASE_IPS: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = (
    ipaddress.IPv4Address("127.0.0.1"),
    ipaddress.IPv6Address("::1"),
)

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"
CLIENTS_DIR = "clients"
README = "README.txt"
POLICY = "policy.yaml"

_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK})
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_TRUST_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,253}[a-z0-9])?$")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DevCertError(ValueError):
    """Input that cannot become a development certificate, or files that would be overwritten."""


@dataclass(frozen=True)
class DevCertSpec:
    """What to make, validated: server DNS names and IPs (the defaults included), client names, trust domain, days."""

    dns_names: tuple[str, ...]
    ips: tuple[IpAddress, ...]
    clients: tuple[str, ...]
    trust_domain: str
    days: int

    def client_identity(self, client: str) -> str:
        return spiffe_id(self.trust_domain, client)

    @property
    def principal_pattern(self) -> str:
        """The policy ``subject`` glob matching every client identity of this trust domain."""
        return f"spiffe://{self.trust_domain}/agent/*"


@dataclass(frozen=True)
class BundleFile:
    """One file of the set: its path relative to DIR (POSIX separators), its bytes, and whether it is a secret."""

    relpath: str
    data: bytes
    private: bool


@dataclass(frozen=True)
class DevCertBundle:
    """The whole set in memory, ready to be written."""

    spec: DevCertSpec
    files: tuple[BundleFile, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    ca_fingerprint: str
    """SHA-256 of the CA certificate (DER), colon-separated hex."""


def spiffe_id(trust_domain: str, client: str) -> str:
    """The SPIFFE ID a development client certificate carries."""
    return f"spiffe://{trust_domain}/agent/{client}"


def client_cert_path(client: str) -> str:
    return f"{CLIENTS_DIR}/{client}.pem"


def client_key_path(client: str) -> str:
    return f"{CLIENTS_DIR}/{client}-key.pem"


def layout(spec: DevCertSpec) -> tuple[str, ...]:
    """Every path (relative to DIR) the set for ``spec`` writes."""
    paths = [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY]
    for client in spec.clients:
        paths += [client_cert_path(client), client_key_path(client)]
    return (*paths, POLICY, README)


# ---------------------------------------------------------------------------------------------------------------
# Validation


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else f"{value[:80]}...")


def check_dns_name(value: str) -> str:
    """A server DNS name, lowercased; refused with a reason if it is not a plain host name."""
    if not isinstance(value, str) or not value:
        raise DevCertError("--server-name: empty name")
    if not value.isascii():
        raise DevCertError(f"--server-name {_shown(value)}: use the ASCII (xn--) form of an internationalised name")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        raise DevCertError(f"--server-name {_shown(value)} is an IP address: give it with --server-ip")
    name = value.lower()
    if name.startswith("*."):
        raise DevCertError(f"--server-name {_shown(value)}: wildcards are not made here; list each name")
    if len(name) > 253:
        raise DevCertError(f"--server-name {_shown(value)}: longer than 253 characters")
    labels = name.split(".")
    if not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise DevCertError(
            f"--server-name {_shown(value)}: not a host name (dot-separated labels of 1-63 characters a-z, 0-9 "
            "and '-', not starting or ending with '-'; no trailing dot)"
        )
    return name


def check_ip(value: str) -> IpAddress:
    """A server IP address (IPv4 or IPv6, no zone index)."""
    try:
        ip = ipaddress.ip_address(value.strip() if isinstance(value, str) else value)
    except ValueError:
        raise DevCertError(f"--server-ip {_shown(str(value))}: not an IPv4 or IPv6 address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise DevCertError(f"--server-ip {_shown(value)}: a zone index (%...) cannot go in a certificate")
    return ip


def check_trust_domain(value: str) -> str:
    """A SPIFFE trust domain name: lowercase letters, digits, '.', '-' and '_' (the SPIFFE ID spec)."""
    if not isinstance(value, str) or not _TRUST_DOMAIN.fullmatch(value) or ".." in value:
        raise DevCertError(
            f"--trust-domain {_shown(str(value))}: use 1-255 characters a-z, 0-9, '.', '-' and '_' "
            "(lowercase, as a SPIFFE trust domain), e.g. nats-mcp.dev"
        )
    return value


def check_client(value: str) -> str:
    try:
        return validate_name(value, "client name")
    except InvalidNameError as exc:
        raise DevCertError(f"--client: {exc}") from None


def _unique(values: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise DevCertError(f"{what} {_shown(value)} is given twice")
        seen.add(value)


def make_spec(
    server_names: Sequence[str] = (),
    server_ips: Sequence[str] = (),
    clients: Sequence[str] = (),
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    days: int = DEFAULT_DAYS,
) -> DevCertSpec:
    """Validate everything up front; ``clients`` empty means the one default client ``agent-1``."""
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise DevCertError(f"--days {days!r}: must be between 1 and {MAX_DAYS}")
    if len(server_names) > MAX_SERVER_NAMES or len(server_ips) > MAX_SERVER_NAMES:
        raise DevCertError(f"at most {MAX_SERVER_NAMES} --server-name and {MAX_SERVER_NAMES} --server-ip")
    if len(clients) > MAX_CLIENTS:
        raise DevCertError(f"at most {MAX_CLIENTS} --client")
    domain = check_trust_domain(trust_domain)
    names = [check_dns_name(n) for n in server_names]
    ips = [check_ip(i) for i in server_ips]
    client_names = [check_client(c) for c in clients] or [DEFAULT_CLIENT]
    _unique(client_names, "--client")
    dns = list(BASE_DNS_NAMES)
    dns += [n for n in dict.fromkeys(names) if n not in dns]  # repeats of localhost or of each other: harmless
    all_ips = list(BASE_IPS)
    all_ips += [i for i in dict.fromkeys(ips) if i not in all_ips]
    return DevCertSpec(
        dns_names=tuple(dns), ips=tuple(all_ips), clients=tuple(client_names), trust_domain=domain, days=days
    )


# ---------------------------------------------------------------------------------------------------------------
# Making certificates (in memory)


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
    admin: [dlq]
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


# ---------------------------------------------------------------------------------------------------------------
# Writing files


def conflicts(directory: Path, spec: DevCertSpec) -> list[Path]:
    """Files of the set that already exist in ``directory`` (symlinks included, dangling or not)."""
    return [directory / rel for rel in layout(spec) if os.path.lexists(directory / rel)]


def _write_staged(path: Path, data: bytes, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, 0o600 if private else 0o644)  # the umask may have narrowed a public file; never widen a key


def _place(staged: Path, target: Path, force: bool) -> None:
    """Move ``staged`` to ``target``: replacing it with ``force``, else only if nothing is there (atomically)."""
    if force:
        os.replace(staged, target)
        return
    try:
        os.link(staged, target)  # fails with EEXIST rather than replace: no window between check and write
    except OSError as exc:
        if isinstance(exc, FileExistsError) or exc.errno not in _NO_HARD_LINKS:
            raise
        if os.path.lexists(target):  # a filesystem without hard links: check, then rename
            raise FileExistsError(errno.EEXIST, "file exists", str(target)) from None
        os.replace(staged, target)
        return
    os.unlink(staged)


def write_bundle(directory: Path, bundle: DevCertBundle, force: bool = False) -> list[Path]:
    """Write the set into ``directory`` (created 0700 if missing); return the paths written, in layout order.

    Without ``force`` an existing file of the set is a ``DevCertError`` and nothing is written; on any failure the
    files already placed are removed again (and ``directory``, if this call created it and it is empty); with
    ``force`` the files they had replaced stay gone, a set that no longer works either way.
    """
    if os.path.lexists(directory) and not directory.is_dir():
        raise DevCertError(f"{directory} exists and is not a directory")
    if not force and (existing := conflicts(directory, bundle.spec)):
        shown = ", ".join(str(p.relative_to(directory)) for p in existing)
        raise DevCertError(
            f"{directory} already holds {shown}: nothing was written; pass --force to replace them "
            "(certificates of the old CA then stop working)"
        )

    created: list[Path] = []  # deepest first, to remove again on failure
    missing = directory
    while not os.path.lexists(missing):
        created.append(missing)
        missing = missing.parent
    for path in reversed(created):
        path.mkdir()  # parents as `mkdir -p` makes them; DIR itself private below
    if created:
        os.chmod(directory, 0o700)
    clients_dir = directory / CLIENTS_DIR
    if not clients_dir.exists():
        clients_dir.mkdir(mode=0o700)
        os.chmod(clients_dir, 0o700)
        created.insert(0, clients_dir)
    elif not clients_dir.is_dir():
        _remove_created(created)
        raise DevCertError(f"{clients_dir} exists and is not a directory")

    placed: list[Path] = []
    staging = Path(tempfile.mkdtemp(prefix=".certs-init-", dir=directory))  # same filesystem: renames are atomic
    try:
        (staging / CLIENTS_DIR).mkdir(mode=0o700)
        for f in bundle.files:
            _write_staged(staging / f.relpath, f.data, f.private)
        for f in bundle.files:
            target = directory / f.relpath
            try:
                _place(staging / f.relpath, target, force)
            except FileExistsError:
                raise DevCertError(f"{target} appeared while writing: nothing was written") from None
            placed.append(target)
    except BaseException:
        for path in placed:
            with contextlib.suppress(OSError):
                path.unlink()
        shutil.rmtree(staging, ignore_errors=True)
        _remove_created(created)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return placed


def _remove_created(created: list[Path]) -> None:
    """Remove the directories this call created (deepest first), where empty."""
    for path in created:
        with contextlib.suppress(OSError):
            path.rmdir()


def stale_client_files(directory: Path, spec: DevCertSpec) -> list[Path]:
    """Client certificates in ``directory/clients`` that this set did not make (issued by an earlier CA)."""
    clients_dir = directory / CLIENTS_DIR
    if not clients_dir.is_dir():
        return []
    ours = {Path(client_cert_path(c)).name for c in spec.clients}
    return sorted(p for p in clients_dir.glob("*.pem") if not p.name.endswith("-key.pem") and p.name not in ours)


__all__ = [
    "CA_COMMON_NAME",
    "DEFAULT_CLIENT",
    "DEFAULT_DAYS",
    "DEFAULT_TRUST_DOMAIN",
    "DEV_LABEL",
    "MAX_DAYS",
    "BundleFile",
    "DevCertBundle",
    "DevCertError",
    "DevCertSpec",
    "conflicts",
    "issue",
    "layout",
    "make_spec",
    "spiffe_id",
    "stale_client_files",
    "write_bundle",
]
