"""The NATS operations safety boundary: which names are this server's own (never writable through ``nats_*``
tools), which subjects are off limits, and the syntax checks every name passes before it reaches NATS.

Every stream and bucket the project creates is named by :mod:`nats_mcp.bus.layout` with the ``nmcp``
prefix (``nmcp_<ns>_registry``, ``nmcp_<ns>_inbox``, ``nmcp_audit``, ...; a KV bucket ``b`` lives in the
stream ``KV_b``), and every project subject starts with ``nmcp.``. Subjects starting with ``$`` are NATS's
own APIs (``$JS``, ``$KV``, ``$O``, ``$SYS``, ``$SRV``) and ``_INBOX`` (or the configured inbox prefix)
carries other clients' replies: publishing there would bypass the per-tool allow-lists or forge replies.
"""

from __future__ import annotations

import re

from nats_mcp.bus.layout import PREFIX
from nats_mcp.coord.errors import Forbidden, InvalidArgument

INTERNAL = f"{PREFIX}_"
_INTERNAL_STREAM_PREFIXES = (INTERNAL, f"KV_{INTERNAL}", f"OBJ_{INTERNAL}")
PROJECT_SUBJECTS = f"{PREFIX}.>"

_STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,240}$")
_KV_KEY = re.compile(r"^[-/_=.A-Za-z0-9]{1,1024}$")
_TOKEN = re.compile(r"^[^\s.]+$")
MAX_SUBJECT = 1024


def internal_stream(name: str) -> bool:
    """One of this server's own streams (also the streams behind its KV buckets)."""
    return name.startswith(_INTERNAL_STREAM_PREFIXES)


def internal_bucket(name: str) -> bool:
    return name.startswith(INTERNAL)


def stream_name(name: str, what: str = "stream") -> str:
    if not _STREAM_NAME.match(name):
        raise InvalidArgument(f"{what} {name[:100]!r} is not a valid name: letters, digits, '_' and '-' only")
    return name


def bucket_name(name: str) -> str:
    if not _BUCKET_NAME.match(name):
        raise InvalidArgument(f"bucket {name[:100]!r} is not a valid name: letters, digits, '_' and '-' only")
    return name


def kv_key(key: str) -> str:
    if not _KV_KEY.match(key) or key.startswith(".") or key.endswith(".") or ".." in key:
        raise InvalidArgument(f"key {key[:100]!r} is not a valid KV key: letters, digits and -/_=. (no empty token)")
    return key


def subject(value: str, *, wildcards: bool) -> str:
    """A well-formed subject: non-empty tokens, no whitespace; ``*``/``>`` only as whole tokens (``>`` last)."""
    tokens = value.split(".")
    ok = 0 < len(value) <= MAX_SUBJECT and all(_TOKEN.match(t) for t in tokens)
    for i, part in enumerate(tokens):
        if ("*" in part or ">" in part) and (
            not wildcards or part not in ("*", ">") or (part == ">" and i != len(tokens) - 1)
        ):
            ok = False
    if not ok:
        kind = "subject (wildcards * and > as whole tokens allowed)" if wildcards else "literal subject"
        raise InvalidArgument(f"{value[:200]!r} is not a valid {kind}")
    return value


def _intersect(a: list[str], b: list[str]) -> bool:
    """Whether two subject patterns can match a common subject."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x == ">" or y == ">":
            return True
        if x != y and "*" not in (x, y):
            return False
        if i == min(len(a), len(b)) - 1:
            return len(a) == len(b)
    return False


def protected_subject(value: str, inbox_prefix: str | None = None) -> str | None:
    """Why ``value`` (a subject or pattern) may not be written to or captured, or None when it may."""
    tokens = value.split(".")
    if tokens[0].startswith("$") or tokens[0] in ("*", ">"):
        return "subjects starting with '$' are NATS's own APIs (use the dedicated nats_* tools)"
    for pattern, why in (
        (PROJECT_SUBJECTS, "it is one of this server's own subjects (channels, inboxes, work, audit)"),
        ("_INBOX.>", "it is a reply inbox of other clients"),
        (f"{inbox_prefix}.>" if inbox_prefix else None, "it is the configured reply inbox prefix"),
    ):
        if pattern is not None and _intersect(tokens, pattern.split(".")):
            return why
    return None


def writable_subject(value: str, *, wildcards: bool, inbox_prefix: str | None) -> str:
    subject(value, wildcards=wildcards)
    why = protected_subject(value, inbox_prefix)
    if why is not None:
        raise Forbidden(f"subject {value[:200]} is not writable through nats_* tools: {why}")
    return value


def writable_stream(name: str) -> str:
    stream_name(name)
    if internal_stream(name):
        raise Forbidden(f"stream {name} belongs to this server (coordination data); it is never writable here")
    return name


def writable_bucket(name: str) -> str:
    bucket_name(name)
    if internal_bucket(name):
        raise Forbidden(f"bucket {name} belongs to this server (coordination data); it is never writable here")
    return name


def readable_content(stream: str | None = None, bucket: str | None = None) -> None:
    """Message and value contents of the server's own streams and buckets are not shown either: they hold
    owner-only inboxes, visibility-scoped registry entries and API key hashes (the warp_* tools read them)."""
    if stream is not None and internal_stream(stream):
        raise Forbidden(f"stream {stream} holds this server's coordination data; read it with the warp_* tools")
    if bucket is not None and internal_bucket(bucket):
        raise Forbidden(f"bucket {bucket} holds this server's coordination data; it is not readable here")
