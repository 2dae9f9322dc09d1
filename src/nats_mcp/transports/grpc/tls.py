"""The gRPC TLS boundary: what the TLS layer says about the peer, and the server's certificates (reloaded) and options.

The peer's address and verified client certificate (from ``auth_context``) are what the call's admission hands the
security core (``transports/grpc/admission.py``); the certificate files are re-read when they change, so a rotation
needs no restart; the channel arguments bound message size, streams, keepalives and connection age.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import grpc

from nats_mcp.config.grpc import GrpcSettings

log = logging.getLogger("nats_mcp.grpc")


def peer_address(peer: str) -> str | None:
    """The IP address of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:%5B::1%5D:5``), None for others."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0] or None
    if kind == "ipv6":
        host = unquote(rest).rsplit(":", 1)[0]
        return host.strip("[]") or None
    return None


@functools.lru_cache(maxsize=1024)
def peer_cert(pem: bytes) -> dict[str, object]:
    """A verified client certificate (PEM from ``auth_context``) in ``ssl.getpeercert()`` shape for mTLS authn.

    Cached by the PEM (a pure function of it; every call of a connection carries the same one): parsing it was
    a tenth of a cheap ``Call``'s server time. Callers must not change the mapping.
    """
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(pem)
    sans: list[tuple[str, str]] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans += [("URI", v) for v in ext.get_values_for_type(x509.UniformResourceIdentifier)]
        sans += [("DNS", v) for v in ext.get_values_for_type(x509.DNSName)]
        sans += [("IP Address", str(v)) for v in ext.get_values_for_type(x509.IPAddress)]
    subject = tuple((("commonName", str(a.value)),) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    return {"subject": subject, "subjectAltName": tuple(sans), "serialNumber": format(cert.serial_number, "X")}


def first_value(auth: Mapping[str, Any], key: str) -> bytes | None:
    """The first value of ``key`` in an ``auth_context`` mapping, as bytes (None when absent)."""
    values = auth.get(key)
    if not values:
        return None
    value = next(iter(values), None)
    return value if isinstance(value, bytes) else None


def check_key_pair(chain: bytes, key: bytes, ca: bytes | None) -> None:
    """ValueError unless ``chain`` starts with a certificate for ``key`` and ``ca`` holds certificates.

    The gRPC core takes any bytes and fails handshakes later; a rotation caught half-way (a new key, the old
    certificate) or a truncated file must instead keep the current configuration.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    leaf = x509.load_pem_x509_certificate(chain)
    private = serialization.load_pem_private_key(key, password=None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(serialization.Encoding.PEM, spki) != private.public_key().public_bytes(
        serialization.Encoding.PEM, spki
    ):
        raise ValueError("the certificate is not for this key (a rotation half done?)")
    if ca is not None and not x509.load_pem_x509_certificates(ca):
        raise ValueError("the client CA file holds no certificate")


class CertificateReloader:
    """Serves the certificate files' current content: a changed key pair or CA is used from the next handshake."""

    def __init__(self, settings: GrpcSettings) -> None:
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            raise ValueError("grpc.tls_cert_file and grpc.tls_key_file are needed for TLS")
        self.files: list[Path] = [settings.tls_cert_file, settings.tls_key_file]
        if settings.client_ca_file is not None:
            self.files.append(settings.client_ca_file)
        self.ca_file = settings.client_ca_file
        self._stamp = self._stamps()
        self.initial = self._load()

    def _stamps(self) -> tuple[tuple[int, int], ...]:
        return tuple((int(s.st_mtime_ns), int(s.st_size)) for s in (os.stat(f) for f in self.files))

    def _load(self) -> grpc.ServerCertificateConfiguration:
        chain, key = self.files[0].read_bytes(), self.files[1].read_bytes()
        ca = self.ca_file.read_bytes() if self.ca_file is not None else None
        check_key_pair(chain, key, ca)
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=ca)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by the gRPC core before each handshake: None keeps the current configuration."""
        try:
            stamp = self._stamps()
            if stamp == self._stamp:
                return None
            config = self._load()
        except (OSError, ValueError) as exc:  # half-written files during a rotation: keep serving the old ones
            log.warning("TLS certificate reload failed (keeping the current ones): %s", exc)
            return None
        self._stamp = stamp
        log.info("TLS certificates reloaded")
        return config


def server_credentials(settings: GrpcSettings) -> grpc.ServerCredentials:
    """TLS credentials (mutual unless ``require_client_cert`` is off), re-read when the files change."""
    if settings.require_client_cert and settings.client_ca_file is None:
        raise ValueError("grpc.require_client_cert needs grpc.client_ca_file (the CA client certificates chain to)")
    reloader = CertificateReloader(settings)
    return grpc.dynamic_ssl_server_credentials(
        reloader.initial,
        reloader,  # type: ignore[arg-type]  # the core accepts None for "unchanged"; the stub says otherwise
        require_client_authentication=settings.require_client_cert,
    )


def server_options(settings: GrpcSettings) -> list[tuple[str, Any]]:
    """Channel arguments: message size, streams per connection, keepalive enforcement, connection age."""
    ms = 1000
    options: list[tuple[str, Any]] = [
        # gRPC refuses larger messages itself (unaudited); up to twice the cap our check answers and audits.
        ("grpc.max_receive_message_length", 2 * settings.max_message_bytes + 1024),
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * ms)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * ms)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", int(settings.min_client_ping_interval_s * ms)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.so_reuseport", 0),
    ]
    if settings.max_connection_age_s is not None:
        options.append(("grpc.max_connection_age_ms", int(settings.max_connection_age_s * ms)))
        options.append(("grpc.max_connection_age_grace_ms", int(settings.max_connection_age_grace_s * ms)))
    if settings.max_connection_idle_s is not None:
        options.append(("grpc.max_connection_idle_ms", int(settings.max_connection_idle_s * ms)))
    return options
