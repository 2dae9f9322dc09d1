"""The identity-endpoint probe boundary: a TLS handshake to each JWKS and introspection URL, for ``nats-mcp doctor``.

It reports the keys (pins) of the chain each endpoint presents and whether the configured pins name one of them.
The handshake verifies the certificate as the fetch does (the configured CA file, else the system store) but without
the pins, so a mismatch can be shown rather than only refused; nothing is sent over the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from nats_mcp.config.settings import Settings
from nats_mcp.core.pins import chain_pins
from nats_mcp.core.redact import redact


@dataclass(frozen=True)
class EndpointPins:
    """What one endpoint's handshake showed: a doctor line."""

    name: str
    status: Literal["pass", "fail", "skip"]
    detail: str
    hint: str = ""


def _context(ca_file: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=os.path.expanduser(ca_file) if ca_file else None)


async def probe(
    name: str, url: str, ca_file: Path | None, pins: Sequence[str], setting: str, timeout: float
) -> EndpointPins:
    """Handshake with ``url``'s host and compare the chain's keys with ``pins``."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return EndpointPins(name, "skip", f"{redact(url)} is not https: nothing to pin")
    host, port = parts.hostname, parts.port or 443
    try:
        ctx = _context(ca_file)
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx, server_hostname=host), timeout)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return EndpointPins(name, "fail", f"TLS to {host}:{port} failed: {why}", "check the URL and its CA file")
    try:
        seen = chain_pins(writer.get_extra_info("ssl_object"))
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    shown = ", ".join(seen)
    if not pins:
        return EndpointPins(name, "pass", f"not pinned; {host}'s chain (leaf first): {shown}", f"pin with {setting}")
    matched = [p for p in seen if p in pins]
    if matched:
        return EndpointPins(name, "pass", f"{setting} matches {', '.join(matched)}; {host}'s chain: {shown}")
    return EndpointPins(
        name,
        "fail",
        f"{setting}: no pinned key in {host}'s chain ({shown}); every fetch is refused",
        "if the endpoint's key was rotated on purpose, add its new pin; otherwise this may not be your endpoint",
    )


async def probe_all(settings: Settings, timeout: float) -> list[EndpointPins]:
    """One line per configured JWKS URL and introspection URL (none when neither is configured)."""
    found: list[EndpointPins] = []
    for issuer in settings.security.jwt_issuers:
        if issuer.jwks_url:
            setting = "security.jwt_issuers[].jwks_pins"
            found.append(
                await probe(
                    f"jwks {issuer.issuer}", issuer.jwks_url, issuer.jwks_ca_file, issuer.jwks_pins, setting, timeout
                )
            )
    intro = settings.security.introspection
    if intro.url:
        found.append(
            await probe("introspection", intro.url, intro.ca_file, intro.pins, "security.introspection.pins", timeout)
        )
    return found
