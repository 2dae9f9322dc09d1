"""The development-certificate spec boundary: what to make (names, IPs, trust domain, days, validated), and where.

``make_spec`` validates every input, so nothing is made from a name it refused.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
