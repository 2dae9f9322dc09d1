"""The NATS operations result boundary: what the ``nats_*`` tools return (bounded, payloads shown safely)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Encoding = Literal["utf-8", "base64", "hex"]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Payload(_M):
    """A slice of a message body: UTF-8 text when it is printable text, else base64 (or hex when asked)."""

    encoding: Encoding
    data: str
    size: int
    """The whole body's size in bytes."""
    offset: int
    truncated: bool
    nextOffset: int | None
    """Pass as ``offset`` to read on (None: this slice reaches the end)."""


class StoredMessage(_M):
    stream: str
    seq: int
    subject: str
    time: str | None
    headers: dict[str, str]
    payload: Payload


class StreamSummary(_M):
    name: str
    description: str | None
    subjects: list[str]
    storage: str
    retention: str
    replicas: int
    messages: int
    bytes: int
    firstSeq: int
    lastSeq: int
    consumers: int
    created: str | None
    internal: bool
    """One of this server's own streams (registry, inboxes, channels, work, DLQ, audit): never writable here."""


class StreamDetail(StreamSummary):
    maxMsgs: int
    maxBytes: int
    maxAgeSeconds: float
    maxMsgSize: int
    maxMsgsPerSubject: int
    discard: str
    duplicateWindowSeconds: float
    numSubjects: int | None
    numDeleted: int | None
    allowDirect: bool
    sealed: bool
    denyDelete: bool
    denyPurge: bool
    cluster: str | None
    leader: str | None


class ConsumerSummary(_M):
    stream: str
    name: str
    durable: bool
    description: str | None
    filterSubjects: list[str]
    deliverPolicy: str
    ackPolicy: str
    numPending: int
    numAckPending: int
    numRedelivered: int
    numWaiting: int
    deliveredStreamSeq: int
    ackFloorStreamSeq: int
    created: str | None


class KvEntry(_M):
    bucket: str
    key: str
    revision: int
    operation: Literal["PUT", "DEL", "PURGE"]
    created: str | None
    payload: Payload | None


class BucketSummary(_M):
    bucket: str
    values: int
    bytes: int
    history: int
    ttlSeconds: float
    storage: str
    replicas: int
    internal: bool


class Page(_M):
    nextCursor: str | None
    hasMore: bool
    total: int | None
    """Items visible to you in all pages (None when the name scan stopped at its cap)."""
