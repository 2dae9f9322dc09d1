"""Boundary of credential material made at test time: trustme TLS certificates and NKey user seeds on disk."""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nkeys
import trustme

SERVER_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1")
CLIENT_IDENTITY = "nats-client.test"


@dataclass(frozen=True)
class CertFiles:
    """A leaf certificate (PEM chain), its private key, and the PEM of the CA that issued it."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class TlsMaterial:
    """TLS/mTLS test material: a trusted CA with server and client certs, plus an untrusted CA/client pair."""

    ca_file: Path
    server: CertFiles
    client: CertFiles
    untrusted_ca_file: Path
    untrusted_client: CertFiles


@dataclass(frozen=True)
class NKeyUser:
    """An NKey user: the public key ("U...") for server config and the seed file ("SU...") for clients."""

    public_key: str
    seed: str
    seed_file: Path


def _write_private(path: Path, data: bytes) -> Path:
    """Write secret material with mode 0600 from the start (no window where it is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)
    return path


def write_ca(ca: trustme.CA, directory: Path, name: str = "ca") -> Path:
    """Write the CA certificate as ``<directory>/<name>.pem`` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def issue_cert(ca: trustme.CA, ca_file: Path, directory: Path, name: str, identities: Sequence[str]) -> CertFiles:
    """Issue a leaf cert (server+client auth usage) as ``<name>-cert.pem`` and ``<name>-key.pem``."""
    directory.mkdir(parents=True, exist_ok=True)
    leaf = ca.issue_cert(*identities, common_name=identities[0])
    cert_file = directory / f"{name}-cert.pem"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key_file = _write_private(directory / f"{name}-key.pem", leaf.private_key_pem.bytes())
    return CertFiles(ca_file=ca_file, cert_file=cert_file, key_file=key_file)


def issue_server_cert(
    ca: trustme.CA, ca_file: Path, directory: Path, name: str = "server", hosts: Sequence[str] = SERVER_HOSTS
) -> CertFiles:
    """Issue a server certificate whose SANs are ``hosts`` (default: localhost and 127.0.0.1)."""
    return issue_cert(ca, ca_file, directory, name, hosts)


def issue_client_cert(
    ca: trustme.CA, ca_file: Path, directory: Path, name: str = "client", identity: str = CLIENT_IDENTITY
) -> CertFiles:
    """Issue a client certificate for ``identity``."""
    return issue_cert(ca, ca_file, directory, name, [identity])


def make_tls_material(directory: Path) -> TlsMaterial:
    """Create a trusted CA (server + client certs) and an unrelated CA (client cert) under ``directory``."""
    ca = trustme.CA(organization_name="nats-mcp test CA")
    ca_file = write_ca(ca, directory, "ca")
    untrusted = trustme.CA(organization_name="nats-mcp untrusted CA")
    untrusted_ca_file = write_ca(untrusted, directory, "untrusted-ca")
    return TlsMaterial(
        ca_file=ca_file,
        server=issue_server_cert(ca, ca_file, directory),
        client=issue_client_cert(ca, ca_file, directory),
        untrusted_ca_file=untrusted_ca_file,
        untrusted_client=issue_client_cert(untrusted, untrusted_ca_file, directory, name="untrusted-client"),
    )


def client_ssl_context(
    ca_file: Path | str | None = None, cert_file: Path | str | None = None, key_file: Path | str | None = None
) -> ssl.SSLContext:
    """A client-side SSLContext trusting ``ca_file`` and optionally presenting a client certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
    if cert_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file is not None else None)
    return ctx


def make_nkey_user(directory: Path, name: str = "user") -> NKeyUser:
    """Generate an NKey user pair (nkeys has no generator: encode 32 random bytes as a user seed).

    The seed is written to ``<directory>/<name>.nk`` with mode 0600.
    """
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public_key = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = _write_private(directory / f"{name}.nk", seed + b"\n")
    return NKeyUser(public_key=public_key, seed=seed.decode(), seed_file=seed_file)
