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
Private keys are mode 0600 from creation, the directories it creates 0700. The identity a client
certificate yields is read back by ``nats_mcp.security.authn.mtls.cert_identity`` (the SPIFFE URI SAN first).

The room: :mod:`.spec` (what to make, validated; the layout of DIR), :mod:`.make` (the certificates, policy and
README in memory), :mod:`.files` (writing the set). This package is their one door: importers use the names below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nats_mcp.security.dev.certs.files import conflicts, stale_client_files, write_bundle
from nats_mcp.security.dev.certs.spec import (
    CA_CERT,
    CA_COMMON_NAME,
    CA_KEY,
    CLIENTS_DIR,
    DEFAULT_CLIENT,
    DEFAULT_DAYS,
    DEFAULT_TRUST_DOMAIN,
    DEV_LABEL,
    MAX_DAYS,
    POLICY,
    README,
    SERVER_CERT,
    SERVER_KEY,
    BundleFile,
    DevCertBundle,
    DevCertError,
    DevCertSpec,
    client_cert_path,
    client_key_path,
    layout,
    make_spec,
    spiffe_id,
)

if TYPE_CHECKING:
    from nats_mcp.security.dev.certs.make import agent_policy, issue, policy_text, readme_text


def __getattr__(name: str) -> Any:
    # .make imports cryptography (~0.1 s): loaded when a certificate is made, not when `nats-mcp` starts.
    if name not in ("agent_policy", "issue", "policy_text", "readme_text"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from nats_mcp.security.dev.certs import make

    return getattr(make, name)


__all__ = [
    "CA_CERT",
    "CA_COMMON_NAME",
    "CA_KEY",
    "CLIENTS_DIR",
    "DEFAULT_CLIENT",
    "DEFAULT_DAYS",
    "DEFAULT_TRUST_DOMAIN",
    "DEV_LABEL",
    "MAX_DAYS",
    "POLICY",
    "README",
    "SERVER_CERT",
    "SERVER_KEY",
    "BundleFile",
    "DevCertBundle",
    "DevCertError",
    "DevCertSpec",
    "agent_policy",
    "client_cert_path",
    "client_key_path",
    "conflicts",
    "issue",
    "layout",
    "make_spec",
    "policy_text",
    "readme_text",
    "spiffe_id",
    "stale_client_files",
    "write_bundle",
]
