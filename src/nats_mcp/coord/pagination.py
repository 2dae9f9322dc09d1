"""The cursor boundary: opaque cursors bound to a tool, a namespace and the filters they were made with."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from nats_mcp.coord.errors import InvalidCursor

_MAX_CURSOR = 512


def filter_hash(filters: Mapping[str, Any]) -> str:
    """A short, order-independent digest of the filters (None values do not count)."""
    clean = {k: v for k, v in filters.items() if v is not None}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make_cursor(tool: str, namespace: str, filters: Mapping[str, Any], position: Mapping[str, Any]) -> str:
    """Encode a position; the cursor only works again with the same tool, namespace and filters."""
    body = {"t": tool, "n": namespace, "f": filter_hash(filters), "p": dict(position)}
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_cursor(cursor: str, tool: str, namespace: str, filters: Mapping[str, Any]) -> dict[str, Any]:
    """Decode a cursor made by :func:`make_cursor` for this call, or raise ``invalid_cursor``."""
    if not isinstance(cursor, str) or not cursor or len(cursor) > _MAX_CURSOR:
        raise InvalidCursor("the cursor is malformed: pass back nextCursor exactly as a previous call returned it")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw)
    except (ValueError, json.JSONDecodeError):
        raise InvalidCursor(
            "the cursor is malformed: pass back nextCursor exactly as a previous call returned it"
        ) from None
    if not isinstance(body, dict) or not isinstance(body.get("p"), dict):
        raise InvalidCursor("the cursor is malformed: pass back nextCursor exactly as a previous call returned it")
    if body.get("t") != tool or body.get("n") != namespace:
        raise InvalidCursor(f"this cursor was made by another tool or namespace; it only works with {tool}")
    if body.get("f") != filter_hash(filters):
        raise InvalidCursor("the filters changed since this cursor was made: repeat the same filters, or start over")
    position: dict[str, Any] = body["p"]
    return position


def int_position(position: Mapping[str, Any], key: str, minimum: int = 0) -> int:
    """An integer field of a decoded position, validated."""
    value = position.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidCursor("the cursor is malformed: pass back nextCursor exactly as a previous call returned it")
    return value
