"""The security settings boundary: the ``security`` section of the settings (authentication, policy, limits, audit)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from nats_mcp.config.section import Section
from nats_mcp.core.pins import parse_pins

Algorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
"""Asymmetric algorithms only: a shared-secret (HS*) or ``none`` token is never accepted."""


def _rs256() -> list[Algorithm]:
    return ["RS256"]


class RateSettings(Section):
    """A token bucket: ``burst`` calls at once, refilled at ``rate_per_s``."""

    rate_per_s: float = Field(default=20.0, gt=0, le=1_000_000)
    burst: int = Field(default=40, ge=1, le=10_000_000)


class LockoutSettings(Section):
    """Failed authentications per sender address (an IPv6 one by /64), whatever identity they claim: after
    ``max_failures`` within ``window_s``, the address is locked for ``base_s`` doubling on each further failure up to
    ``max_s``. A credential that verified within ``window_s`` still gets in from a locked address."""

    max_failures: int = Field(default=5, ge=1, le=10_000)
    base_s: float = Field(default=2.0, gt=0, le=86_400)
    max_s: float = Field(default=900.0, gt=0, le=7 * 86_400)
    window_s: float = Field(default=900.0, gt=0, le=7 * 86_400)


class ShareSettings(Section):
    """A pool of long-lived resources the server holds for callers: at most ``total`` at once in this process, of
    which one principal (whatever agent names it uses) holds at most ``per_principal``."""

    total: int = Field(ge=1, le=1_000_000)
    per_principal: int = Field(ge=1, le=1_000_000)


class PoolSettings(Section):
    """The pooled resources a caller can hold open (each keeps NATS subscriptions and server memory)."""

    listen: ShareSettings = Field(default_factory=lambda: ShareSettings(total=64, per_principal=8))
    """``subscriptions/listen`` streams (2026-07-28, HTTP and gRPC ``Listen``)."""
    watches: ShareSettings = Field(default_factory=lambda: ShareSettings(total=4096, per_principal=64))
    """Resource subscriptions of 2025-11-25 connections (``resources/subscribe``, one per URI and connection)."""
    claim_waits: ShareSettings = Field(default_factory=lambda: ShareSettings(total=1000, per_principal=32))
    """Claims waiting for work (``work_claim`` / ``work_claim_batch`` with a timeout above 0)."""
    read_waits: ShareSettings = Field(default_factory=lambda: ShareSettings(total=2000, per_principal=64))
    """Reads waiting for a message (``channels_read`` / ``messages_read_direct`` with ``waitMs`` above 0)."""


class JwtIssuerSettings(Section):
    """One trusted token issuer: where its keys are, which algorithms it may use, what audience it must name."""

    issuer: str = Field(min_length=1, max_length=512)
    audience: str = Field(min_length=1, max_length=512, description="this server's resource URL")

    @field_validator("issuer")
    @classmethod
    def _not_another_providers(cls, value: str) -> str:
        # These issuers belong to other providers' principals (API keys, certificates, introspected tokens, the
        # local user): a JWT issuer named so would make its tokens' subjects those principals.
        if value in ("apikey", "local") or value.startswith(("mtls", "introspection:", "introspection-")):
            raise ValueError(f"issuer {value!r} is reserved for another authentication provider")
        return value

    jwks_url: str | None = Field(default=None, max_length=2048)
    jwks_ca_file: Path | None = None
    """CA bundle (PEM) the JWKS endpoint's certificate must chain to (default: the system trust store)."""
    jwks_pins: list[str] = Field(default_factory=list)
    """SPKI pins (``sha256/<base64>``) of the JWKS endpoint: its verified chain must hold one of these keys on every
    connection, or the fetch is refused before the request is sent. Several stage a key rotation."""
    public_key_files: list[Path] = Field(default_factory=list)
    algorithms: list[Algorithm] = Field(default_factory=_rs256, min_length=1)
    roles_claim: str = Field(default="roles", min_length=1, max_length=128)
    leeway_s: float = Field(default=30.0, ge=0, le=300)
    jwks_refresh_min_s: float = Field(default=60.0, ge=1, le=86_400)
    """An unknown ``kid`` refetches the JWKS at most this often (a flood of made-up kids cannot hammer the IdP)."""

    @field_validator("jwks_pins")
    @classmethod
    def _pins(cls, value: list[str]) -> list[str]:
        return parse_pins(value, "security.jwt_issuers[].jwks_pins")


class IntrospectionSettings(Section):
    """OAuth 2 token introspection (RFC 7662), used for opaque bearer tokens."""

    url: str | None = Field(default=None, max_length=2048)
    client_id: str | None = None
    client_secret: SecretStr | None = None
    audience: str | None = None
    cache_s: float = Field(default=30.0, ge=0, le=600)
    cache_max: int = Field(default=10_000, ge=1, le=1_000_000)
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    ca_file: Path | None = None
    """CA bundle (PEM) the endpoint's certificate must chain to (default: the system trust store)."""
    pins: list[str] = Field(default_factory=list)
    """SPKI pins (``sha256/<base64>``) of the endpoint: its verified chain must hold one of these keys on every
    connection, or the request is refused before the token or the client secret is sent."""

    @field_validator("pins")
    @classmethod
    def _pins(cls, value: list[str]) -> list[str]:
        return parse_pins(value, "security.introspection.pins")


class AuditSettings(Section):
    enabled: bool = True
    stream: bool = True
    """Write records to the deployment's audit stream in NATS."""
    file: Path | None = None
    """Also append them to this JSONL file."""
    durability: Literal["async", "sync"] = "async"
    """``sync``: a tool call is answered once its record is stored by every sink (the stream acknowledged it), and
    answered with an error when that takes longer than ``sync_timeout_s``. ``async``: answered at once, the record
    written in the background within milliseconds — a crash of the process loses what it had not written yet (the
    loss window, docs/deployment.md "Audit durability"); ``audit verify --closed`` reports such a chain."""
    sync_timeout_s: float = Field(default=5.0, gt=0, le=300)
    batch_wait_ms: float = Field(default=0.0, ge=0, le=1000)
    """``async`` only: how long the writer waits for more records before writing what it has (fewer, larger
    batches: less nats-server CPU per record; the loss window grows by as much). 0: write as soon as there is one."""


class LocalPrincipalSettings(Section):
    """Who a stdio process acts as (the local user)."""

    subject: str = Field(default="local", min_length=1, max_length=256)
    roles: list[str] = Field(default_factory=lambda: ["agent"])
    rate_limited: bool = False
    """Whether the per-principal rate limit applies to the local principal (a stdio process serves one user)."""


class SecuritySettings(Section):
    """Authentication, authorization policy, abuse limits and audit: one pipeline for every transport."""

    policy_file: Path | None = None
    """YAML policy; without one, the built-in policy gives role ``agent`` every tool (fit for stdio only)."""
    local: LocalPrincipalSettings = Field(default_factory=LocalPrincipalSettings)
    rate_per_principal: RateSettings = Field(default_factory=RateSettings)
    rate_per_address: RateSettings = Field(default_factory=lambda: RateSettings(rate_per_s=50.0, burst=100))
    lockout: LockoutSettings = Field(default_factory=LockoutSettings)
    ip_allow: list[str] = Field(default_factory=list)
    """CIDRs (IPv4 or IPv6); when set, only these addresses get in."""
    ip_deny: list[str] = Field(default_factory=list)
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_json_depth: int = Field(default=32, ge=2, le=256)
    pools: PoolSettings = Field(default_factory=PoolSettings)
    max_agents_per_principal: int = Field(default=16, ge=1, le=100_000)
    """Distinct agent names (the ``x-nats-mcp-agent`` header) one principal may act as in this process; a role's
    ``max_agents`` in the policy overrides it for the principals holding that role (the largest one counts)."""
    agent_idle_s: float = Field(default=86_400.0, gt=0, le=365 * 86_400)
    """An agent name unused this long no longer counts towards ``max_agents_per_principal``."""
    state_max_entries: int = Field(default=100_000, ge=100, le=10_000_000)
    """Bound on the in-memory state of rate limits and lockouts (least recently used entries go first)."""
    jwt_issuers: list[JwtIssuerSettings] = Field(default_factory=list)
    dev_tokens: bool = False
    """Trust tokens made by ``nats-mcp token issue`` (development only)."""
    introspection: IntrospectionSettings = Field(default_factory=IntrospectionSettings)
    api_keys: bool = True
    """Accept API keys made with ``nats-mcp keys create``."""
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @field_validator("ip_allow", "ip_deny")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not an IP address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32)") from None
        return value
