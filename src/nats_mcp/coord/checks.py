"""The input-limits boundary of the domain: size and shape checks shared by every tool that stores user JSON or text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from nats_mcp.coord.errors import InvalidArgument, LimitExceeded


def json_depth(value: object, stop_after: int) -> int:
    """Nesting depth of a JSON value (a scalar is 0, ``{}`` is 1); stops counting past ``stop_after``.

    Iterative, so a hostile, deeply nested value cannot exhaust the recursion limit.
    """
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterator[object] = iter(item.values())
        elif isinstance(item, list | tuple):
            children = iter(item)
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > stop_after:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_metadata(metadata: object, max_bytes: int, max_depth: int) -> dict[str, Any] | None:
    """A metadata object that fits the limits, or the matching error (nothing is written on failure)."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidArgument("metadata must be a JSON object")
    depth = json_depth(metadata, max_depth)
    if depth > max_depth:
        raise LimitExceeded(f"metadata is nested more than {max_depth} levels deep (limits.metadata_depth)")
    try:
        size = len(dumps(metadata))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"metadata must be plain JSON (objects, arrays, strings, numbers, booleans, null): {exc}"
        ) from None
    if size > max_bytes:
        raise LimitExceeded(
            f"metadata is {size} bytes serialized; the limit is {max_bytes} bytes (limits.metadata_bytes)"
        )
    return metadata


def dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def timestamp() -> str:
    """UTC, millisecond precision, ``Z`` suffix (the format Warp's DMs carry)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_instant(text: object, what: str = "deadline") -> datetime:
    """An ISO 8601 date-time as an aware UTC datetime (a value without an offset is taken as UTC)."""
    if not isinstance(text, str) or not text.strip() or len(text) > 64:
        raise InvalidArgument(f"{what} must be an ISO 8601 date-time such as 2026-11-21T18:00:00Z")
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgument(f"{what} {text!r} is not an ISO 8601 date-time; use e.g. 2026-11-21T18:00:00Z") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso(value: datetime) -> str:
    """UTC, millisecond precision, ``Z`` suffix."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_epoch(epoch: float) -> str:
    """A Unix time as :func:`iso` writes it."""
    return iso(datetime.fromtimestamp(epoch, UTC))
