"""What the ``nats_*`` tool families share: paging arguments and results, payload rendering, argument texts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from nats_mcp.api.tools.base import Args, Out, more_hint
from nats_mcp.coord.natsops.models import Payload

STREAM_DOC = "Stream name (letters, digits, '_' and '-')."
BUCKET_DOC = "KV bucket name (letters, digits, '_' and '-')."
CURSOR = "nextCursor of the previous page (same other arguments)."
ENC = "How to show the payload: auto (text if printable UTF-8, else base64), base64 or hex."
DESC = "A human description."
REPLICAS = "Copies kept in a cluster."
DISCARD = "When full: old drops the oldest messages, new refuses new ones."
PayloadEnc = Literal["auto", "base64", "hex"]
InEnc = Literal["utf-8", "base64", "hex"]
READ_HINTS: dict[str, Any] = {"read_only": True, "idempotent": True}


def page_limit(default: int) -> Any:
    return Field(default=default, ge=1, le=1000, description="Items per page (at most nats_ops.max_page).")


class NoArgs(Args):
    pass


class PageArgs(Args):
    limit: int = page_limit(20)
    cursor: str | None = Field(default=None, max_length=512, description=CURSOR)


class PageOut(Out):
    nextCursor: str | None
    hasMore: bool
    total: int | None


class DeletedOut(Out):
    deleted: bool


def show(payload: Payload | None) -> str:
    if payload is None:
        return "(no value)"
    more = f"\n\n(truncated: {payload.size} bytes in all; continue with `offset: {payload.nextOffset}`)"
    body = f"```\n{payload.data}\n```" if payload.encoding == "utf-8" else f"{payload.encoding}: `{payload.data}`"
    return body + (more if payload.nextOffset is not None else "")


def page_text(items: list[str], cursor: str | None, none: str) -> str:
    return ("\n".join(items) if items else none) + more_hint(cursor)
