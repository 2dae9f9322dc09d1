"""The NATS operations payload boundary: stored payloads shown bounded (text or base64/hex slices), payloads and
headers an agent sends decoded and checked.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from typing import Any, Literal

from nats_mcp.coord.errors import Forbidden, InvalidArgument, LimitExceeded
from nats_mcp.coord.natsops.models import (
    Encoding,
    Payload,
)

MAX_HEADERS = 32
MAX_HEADER_VALUE = 512
PayloadEncoding = Literal["auto", "base64", "hex"]


# ---- payloads -------------------------------------------------------------------------------------


def _utf8(chunk: bytes, cut_allowed: bool) -> tuple[str, int] | None:
    """The chunk as text and the bytes it used; a cut slice may end inside a character (drop up to 3 bytes)."""
    for cut in range(4 if cut_allowed else 1):
        with contextlib.suppress(UnicodeDecodeError):
            return chunk[: len(chunk) - cut].decode("utf-8"), len(chunk) - cut
    return None


def preview(data: bytes, offset: int, limit: int, encoding: PayloadEncoding = "auto") -> Payload:
    """A bounded slice of ``data`` from ``offset``: text when it is printable UTF-8, else base64 (or hex)."""
    if offset < 0 or offset > len(data):
        raise InvalidArgument(f"offset {offset} is outside the {len(data)}-byte payload")
    chunk = data[offset : offset + limit]
    shown: Encoding = "base64" if encoding == "auto" else encoding
    text = None
    if encoding == "auto":
        decoded = _utf8(chunk, offset + len(chunk) < len(data))
        if decoded is not None and all(c.isprintable() or c in "\n\r\t" for c in decoded[0]):
            shown, text, chunk = "utf-8", decoded[0], chunk[: decoded[1]]
    if text is None:
        text = chunk.hex() if shown == "hex" else base64.b64encode(chunk).decode()
    end = offset + len(chunk)
    more = end < len(data)
    return Payload(
        encoding=shown,
        data=text,
        size=len(data),
        offset=offset,
        truncated=more or offset > 0,
        nextOffset=end if more else None,
    )


def decode_payload(data: str, encoding: Literal["utf-8", "base64", "hex"], limit: int) -> bytes:
    try:
        raw = (
            data.encode()
            if encoding == "utf-8"
            else base64.b64decode(data, validate=True)
            if encoding == "base64"
            else bytes.fromhex(data)
        )
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"the payload is not valid {encoding}") from None
    if len(raw) > limit:
        raise LimitExceeded(f"the payload is {len(raw)} bytes; the limit is {limit} (nats_ops.max_publish_bytes)")
    return raw


def bounded_headers(headers: dict[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in list((headers or {}).items())[:MAX_HEADERS]:
        text = str(value)
        out[str(key)[:256]] = text if len(text) <= MAX_HEADER_VALUE else text[:MAX_HEADER_VALUE] + "…"
    return out


def check_headers(headers: dict[str, str] | None) -> dict[str, str] | None:
    """Headers of a publish or request; JetStream's control headers (rollup, schedules, TTLs) are refused: they
    would turn a publish into a purge or a message to another subject. Nats-Msg-Id and Nats-Expected-* stay."""
    if not headers:
        return None
    if len(headers) > MAX_HEADERS:
        raise LimitExceeded(f"at most {MAX_HEADERS} headers")
    for key, value in headers.items():
        low = key.lower()
        if low.startswith("nats-") and low != "nats-msg-id" and not low.startswith("nats-expected-"):
            raise Forbidden(f"header {key[:100]} controls JetStream; only Nats-Msg-Id and Nats-Expected-* are allowed")
        if not key or any(c in key for c in ": \r\n") or len(key) > 256 or "\r" in value or "\n" in value:
            raise InvalidArgument(f"header {key[:100]!r} is not valid (no ':', spaces or line breaks; key ≤ 256)")
        if len(value) > 4096:
            raise LimitExceeded(f"header {key} is longer than 4096 characters")
    return headers
