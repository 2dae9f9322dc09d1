"""The certificate-pinning boundary: SPKI pins (``sha256/<base64>``), their parsing, and TLS contexts that enforce them.

A pin is the SHA-256 of a certificate's DER SubjectPublicKeyInfo, base64-encoded and written ``sha256/<base64>``
(the form of HPKP and curl's ``--pinnedpubkey``; ``openssl x509 -pubkey -noout | openssl pkey -pubin -outform der |
openssl dgst -sha256 -binary | base64`` computes it). A pinned connection must present, in the chain it verified
(leaf, intermediates, trust anchor), at least one certificate whose key is pinned; otherwise the handshake fails
with :class:`PinMismatchError` right after it completes, before the caller writes a byte of its own. Several pins
stage a rotation: the old key's and the new key's together. The check lives in the SSL object the context creates
(``sslobject_class`` for asyncio and anyio streams, ``sslsocket_class`` for blocking sockets), so every handshake
made with the context, reconnects included, is checked; there is no path around it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import ssl
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

PREFIX = "sha256/"
_PIN = re.compile(r"^sha256/[A-Za-z0-9+/]{43}=$")


class PinMismatchError(ssl.SSLError):
    """The server's verified chain holds no pinned key; names the setting and the fingerprints seen."""

    def __init__(self, setting: str, seen: Sequence[str], where: str | None = None) -> None:
        self.setting = setting
        self.seen = tuple(seen)
        at = f" at {where}" if where else ""
        shown = ", ".join(self.seen) or "no certificate"
        message = (
            f"{setting}: the server{at} presented no pinned key (its certificate chain has {shown}); "
            "connection refused before anything was sent"
        )
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def pin_error(exc: BaseException | None) -> PinMismatchError | None:
    """The pin refusal behind ``exc`` (nats-py, aiohttp and httpx wrap the handshake's error), if there is one."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, PinMismatchError):
            return exc
        seen.add(id(exc))
        inner = getattr(exc, "os_error", None) or getattr(exc, "_os_error", None)
        exc = inner if isinstance(inner, BaseException) else (exc.__cause__ or exc.__context__)
    return None


def parse_pin(text: str, setting: str) -> str:
    """``text`` as a pin (surrounding spaces dropped), or ValueError naming ``setting`` and the expected form."""
    pin = text.strip()
    ok = bool(_PIN.fullmatch(pin))
    if ok:
        try:
            ok = len(base64.b64decode(pin[len(PREFIX) :], validate=True)) == 32
        except (binascii.Error, ValueError):
            ok = False
    if not ok:
        shown = pin if len(pin) <= 80 else pin[:77] + "..."
        raise ValueError(
            f"{setting}: {shown!r} is not a pin; write sha256/<base64 of the SHA-256 of the certificate's "
            "SubjectPublicKeyInfo> (44 characters after sha256/, e.g. as `nats-mcp certs init` prints them)"
        )
    return pin


def parse_pins(values: Iterable[str], setting: str) -> list[str]:
    """Every pin of ``values`` checked (:func:`parse_pin`), duplicates dropped, order kept."""
    seen: list[str] = []
    for value in values:
        pin = parse_pin(value, setting)
        if pin not in seen:
            seen.append(pin)
    return seen


def pin_of_der(der: bytes) -> str:
    """The pin of a DER certificate's public key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return PREFIX + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def pins_of_pem(data: bytes) -> list[str]:
    """The pins of every certificate in a PEM bundle, in order."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return [pin_of_der(cert.public_bytes(serialization.Encoding.DER)) for cert in x509.load_pem_x509_certificates(data)]


def pins_of_file(path: Path) -> list[str]:
    """The pins of the certificates in a PEM file."""
    return pins_of_pem(path.read_bytes())


def presented_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    """The DER certificates of the chain the handshake verified (leaf first), or the leaf alone.

    Python 3.13 has ``get_verified_chain()``; 3.11 and 3.12 carry it on the private ``_sslobj``. Where neither is
    there, only the leaf (``getpeercert(binary_form=True)``) is known, and only a pin of the leaf can match.
    """
    getter: Any = getattr(ssl_object, "get_verified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_verified_chain", None)
    if getter is not None:
        try:
            chain = getter()
        except (ValueError, ssl.SSLError):
            chain = None
        if chain:
            return [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def chain_pins(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[str]:
    """The pins of the chain a completed handshake verified (leaf first)."""
    return [pin_of_der(der) for der in presented_chain(ssl_object)]


def check_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket, pins: Sequence[str], setting: str) -> None:
    """PinMismatchError unless a key of the verified chain is one of ``pins``."""
    seen = chain_pins(ssl_object)
    if not set(seen) & set(pins):
        raise PinMismatchError(setting, seen, ssl_object.server_hostname)


def pin_context(ctx: ssl.SSLContext, pins: Sequence[str], setting: str) -> ssl.SSLContext:
    """``ctx`` made to refuse, right after each handshake, a server whose verified chain holds no key of ``pins``.

    Pins add to certificate verification, never replace it: ``ctx`` must verify (CERT_REQUIRED).
    """
    if not pins:
        return ctx
    if ctx.verify_mode != ssl.CERT_REQUIRED:
        raise ValueError(f"{setting}: pins need certificate verification on")
    wanted = tuple(pins)

    class PinnedObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()
            check_chain(self, wanted, setting)

    class PinnedSocket(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:
            super().do_handshake(block)
            check_chain(self, wanted, setting)

    ctx.sslobject_class = PinnedObject  # an instance attribute: SSLContext reads it at every wrap
    ctx.sslsocket_class = PinnedSocket
    ctx.nats_mcp_pins = wanted  # type: ignore[attr-defined]  # what doctor reports as configured
    return ctx


def client_context(ca_file: Path | None, pins: Sequence[str], setting: str, url: str) -> ssl.SSLContext | None:
    """A verifying client context trusting ``ca_file`` (else the system store) with ``pins``; None when neither is
    set (the HTTP client's own default). ValueError for pins or a CA file on a URL that is not https."""
    if not pins and ca_file is None:
        return None
    if not url.lower().startswith("https://"):
        raise ValueError(f"{setting}: pins and a CA file need an https:// URL")
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file.expanduser()) if ca_file is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{setting}: cannot load the CA file {ca_file}: {exc}") from None
    return pin_context(ctx, pins, setting)


def context_pins(ctx: ssl.SSLContext | None) -> tuple[str, ...]:
    """The pins :func:`pin_context` put on ``ctx`` (empty: not pinned)."""
    return tuple(getattr(ctx, "nats_mcp_pins", ()))


__all__ = [
    "PREFIX",
    "PinMismatchError",
    "chain_pins",
    "check_chain",
    "client_context",
    "context_pins",
    "parse_pin",
    "parse_pins",
    "pin_context",
    "pin_error",
    "pin_of_der",
    "pins_of_file",
    "pins_of_pem",
    "presented_chain",
]
