"""The ``nats_*`` tool contract: the NATS operations group's names, arguments, results, hints and Markdown.

Registered only when ``nats_ops.enabled`` is set, under the fixed prefix ``nats_``; every call still needs a
policy role that grants the tool and the streams, buckets or subjects it names (security/policy.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from nats_mcp.api.tools.base import Args, Out, Rendered, more_hint
from nats_mcp.coord.errors import InvalidArgument
from nats_mcp.coord.natsops.models import (
    BucketSummary,
    ConsumerSummary,
    KvEntry,
    Payload,
    StoredMessage,
    StreamDetail,
    StreamSummary,
)
from nats_mcp.coord.natsops.service import NatsScope, OpsService, consumer_config, decode_payload, stream_config

PREFIX = "nats_"
_STREAM = "Stream name (letters, digits, '_' and '-')."
_BUCKET = "KV bucket name (letters, digits, '_' and '-')."
_CURSOR = "nextCursor of the previous page (same other arguments)."
_ENC = "How to show the payload: auto (text if printable UTF-8, else base64), base64 or hex."
_DESC = "A human description."
_REPLICAS = "Copies kept in a cluster."
_DISCARD = "When full: old drops the oldest messages, new refuses new ones."
PayloadEnc = Literal["auto", "base64", "hex"]
InEnc = Literal["utf-8", "base64", "hex"]


def _limit(default: int) -> Any:
    return Field(default=default, ge=1, le=1000, description="Items per page (at most nats_ops.max_page).")


# ---- inputs -------------------------------------------------------------------------------------


class NoArgs(Args):
    pass


class PageArgs(Args):
    limit: int = _limit(20)
    cursor: str | None = Field(default=None, max_length=512, description=_CURSOR)


class StreamArgs(Args):
    stream: str = Field(description=_STREAM, max_length=255)


class StreamPageArgs(StreamArgs, PageArgs):
    pass


class GetMessageArgs(StreamArgs):
    seq: int | None = Field(default=None, ge=1, description="The message's stream sequence.")
    lastBySubject: str | None = Field(
        default=None, max_length=1024, description="Instead of seq: the newest message on this subject (no wildcards)."
    )
    offset: int = Field(default=0, ge=0, description="Payload byte offset to show from (payload.nextOffset).")
    encoding: PayloadEnc = Field(default="auto", description=_ENC)


class ConsumerArgs(StreamArgs):
    name: str = Field(description="Consumer name.", max_length=255)


class BucketArgs(Args):
    bucket: str = Field(description=_BUCKET, max_length=240)


class KvKeyArgs(BucketArgs):
    key: str = Field(description="The key (letters, digits and -/_=.).", max_length=1024)


class KvGetArgs(KvKeyArgs):
    revision: int | None = Field(default=None, ge=1, description="A past revision (from nats_kv_history).")
    offset: int = Field(default=0, ge=0, description="Value byte offset to show from (payload.nextOffset).")
    encoding: PayloadEnc = Field(default="auto", description=_ENC)


class KvHistoryArgs(KvKeyArgs):
    limit: int = _limit(10)
    cursor: str | None = Field(default=None, max_length=512, description=_CURSOR)
    encoding: PayloadEnc = Field(default="auto", description=_ENC)


class KvKeysArgs(BucketArgs):
    filter: str = Field(default=">", max_length=1024, description="Keys matching this NATS pattern, e.g. orders.>.")
    limit: int = _limit(100)
    cursor: str | None = Field(default=None, max_length=512, description=_CURSOR)


class PublishArgs(Args):
    subject: str = Field(description="A literal subject (no wildcards).", max_length=1024)
    payload: str = Field(default="", description="The message body, in `encoding`.")
    encoding: InEnc = Field(default="utf-8", description="How payload is written: utf-8 text, base64 or hex.")
    headers: dict[str, str] | None = Field(default=None, description="NATS headers (at most 32).")


class RequestArgs(PublishArgs):
    timeoutMs: int = Field(default=2000, ge=1, le=60_000, description="How long to wait for the reply, in ms.")
    replyEncoding: PayloadEnc = Field(default="auto", description=_ENC)


class StreamCreateArgs(Args):
    name: str = Field(description=_STREAM, max_length=255)
    subjects: list[str] = Field(min_length=1, max_length=64, description="Subjects the stream captures (wildcards ok).")
    description: str | None = Field(default=None, max_length=1024, description=_DESC)
    storage: Literal["file", "memory"] = Field(default="file", description="Where messages are stored.")
    retention: Literal["limits", "interest", "workqueue"] = Field(
        default="limits",
        description="limits: keep up to the limits; interest: while consumers need them; "
        "workqueue: until acknowledged once.",
    )
    replicas: int = Field(default=1, ge=1, le=5, description=_REPLICAS)
    maxMsgs: int = Field(default=-1, ge=-1, description="Most messages kept; -1: unlimited.")
    maxBytes: int = Field(default=-1, ge=-1, description="Most bytes kept; -1: unlimited.")
    maxAgeSeconds: float = Field(default=0, ge=0, description="Oldest message age kept, in seconds; 0: unlimited.")
    maxMsgSize: int = Field(default=-1, ge=-1, description="Largest message accepted, in bytes; -1: unlimited.")
    maxMsgsPerSubject: int = Field(default=-1, ge=-1, description="Most messages kept per subject; -1: unlimited.")
    discard: Literal["old", "new"] = Field(default="old", description=_DISCARD)
    duplicateWindowSeconds: float | None = Field(
        default=None, ge=0, description="Window for deduplicating by Nats-Msg-Id, in seconds (server default: 120)."
    )


class StreamUpdateArgs(Args):
    name: str = Field(description=_STREAM, max_length=255)
    subjects: list[str] | None = Field(default=None, min_length=1, max_length=64, description="New subjects.")
    description: str | None = Field(default=None, max_length=1024, description=_DESC)
    maxMsgs: int | None = Field(default=None, ge=-1, description="Most messages kept; -1: unlimited.")
    maxBytes: int | None = Field(default=None, ge=-1, description="Most bytes kept; -1: unlimited.")
    maxAgeSeconds: float | None = Field(default=None, ge=0, description="Oldest age kept, in seconds; 0: unlimited.")
    maxMsgSize: int | None = Field(default=None, ge=-1, description="Largest message accepted; -1: unlimited.")
    maxMsgsPerSubject: int | None = Field(default=None, ge=-1, description="Most messages per subject; -1: unlimited.")
    discard: Literal["old", "new"] | None = Field(default=None, description=_DISCARD)
    replicas: int | None = Field(default=None, ge=1, le=5, description=_REPLICAS)


class StreamPurgeArgs(Args):
    name: str = Field(description=_STREAM, max_length=255)
    subject: str | None = Field(default=None, max_length=1024, description="Only messages on this subject/pattern.")
    keep: int | None = Field(default=None, ge=0, description="Keep this many newest messages.")


class StreamDeleteArgs(Args):
    name: str = Field(description=_STREAM, max_length=255)


class ConsumerCreateArgs(StreamArgs):
    name: str = Field(description="Durable consumer name.", max_length=255)
    filterSubjects: list[str] = Field(
        default_factory=list, max_length=64, description="Only messages on these subjects (wildcards ok); all if empty."
    )
    deliverPolicy: Literal["all", "last", "new", "by_start_sequence", "last_per_subject"] = Field(
        default="all", description="Where delivery starts (by_start_sequence: at optStartSeq)."
    )
    optStartSeq: int | None = Field(default=None, ge=1, description="The first sequence, for by_start_sequence.")
    ackPolicy: Literal["explicit", "none", "all"] = Field(default="explicit", description="How messages are acked.")
    ackWaitSeconds: float | None = Field(
        default=None, gt=0, le=86_400, description="Seconds before an unacked message is redelivered."
    )
    maxDeliver: int | None = Field(default=None, ge=-1, description="Most deliveries of one message; -1: unlimited.")
    description: str | None = Field(default=None, max_length=1024, description=_DESC)
    inactiveThresholdSeconds: float | None = Field(
        default=None, gt=0, description="Seconds without activity after which NATS deletes the consumer."
    )


class KvPutArgs(KvKeyArgs):
    value: str = Field(description="The value, in `encoding`.")
    encoding: InEnc = Field(default="utf-8", description="How value is written: utf-8 text, base64 or hex.")


class KvDeleteArgs(KvKeyArgs):
    purge: bool = Field(default=False, description="Also drop the key's history (cannot be undone).")


# ---- outputs ------------------------------------------------------------------------------------


class PageOut(Out):
    nextCursor: str | None
    hasMore: bool
    total: int | None


class ServerInfoOut(Out):
    server: dict[str, Any]
    account: dict[str, Any] | None
    monitor: dict[str, Any] | None


class StreamListOut(PageOut):
    streams: list[StreamSummary]


class StreamOut(Out):
    stream: StreamDetail


class MessageOut(Out):
    message: StoredMessage


class ConsumerListOut(PageOut):
    consumers: list[ConsumerSummary]


class ConsumerOut(Out):
    consumer: ConsumerSummary


class BucketListOut(PageOut):
    buckets: list[BucketSummary]


class KvEntryOut(Out):
    entry: KvEntry


class KvHistoryOut(PageOut):
    entries: list[KvEntry]


class KvKeysOut(PageOut):
    bucket: str
    keys: list[str]


class PublishOut(Out):
    subject: str
    bytes: int


class RequestOut(Out):
    subject: str
    replySubject: str
    headers: dict[str, str]
    payload: Payload


class DeletedOut(Out):
    deleted: bool


class KvPutOut(Out):
    bucket: str
    key: str
    revision: int


# ---- handlers -----------------------------------------------------------------------------------


def _show(payload: Payload | None) -> str:
    if payload is None:
        return "(no value)"
    more = f"\n\n(truncated: {payload.size} bytes in all; continue with `offset: {payload.nextOffset}`)"
    body = f"```\n{payload.data}\n```" if payload.encoding == "utf-8" else f"{payload.encoding}: `{payload.data}`"
    return body + (more if payload.nextOffset is not None else "")


def _page_text(items: list[str], cursor: str | None, none: str) -> str:
    return ("\n".join(items) if items else none) + more_hint(cursor)


async def server_info(ops: OpsService, _scope: NatsScope, _args: NoArgs) -> Rendered:
    info = await ops.server_info()
    out = ServerInfoOut(**info)
    s = out.server
    text = f"**{s.get('server_name', '?')}** nats-server {s.get('version', '?')}"
    text += f", cluster {s['cluster']}" if s.get("cluster") else ""
    text += f", JetStream {'on' if s.get('jetstream') else 'off'}"
    if out.account:
        a = out.account
        text += f"\n\nAccount: {a['streams']} streams, {a['consumers']} consumers, "
        text += f"{a['storage']} B file, {a['memory']} B memory"
    return out, text


async def stream_list(ops: OpsService, scope: NatsScope, args: PageArgs) -> Rendered:
    streams, page = await ops.stream_list(scope, args.limit, args.cursor)
    rows = [
        f"- **{s.name}**{' (internal)' if s.internal else ''}: {', '.join(s.subjects)} — {s.messages} msgs, "
        f"{s.bytes} B, {s.consumers} consumers"
        for s in streams
    ]
    return StreamListOut(streams=streams, **page.model_dump()), _page_text(
        rows, page.nextCursor, "No streams you may see."
    )


async def stream_info(ops: OpsService, _scope: NatsScope, args: StreamArgs) -> Rendered:
    d = await ops.stream_info(args.stream)
    text = (
        f"**{d.name}**{' (internal: read-only)' if d.internal else ''} — subjects {', '.join(d.subjects)}; "
        f"{d.storage}, {d.retention}, R{d.replicas}; {d.messages} msgs ({d.firstSeq}..{d.lastSeq}), {d.bytes} B, "
        f"{d.consumers} consumers"
    )
    return StreamOut(stream=d), text


async def stream_get_message(ops: OpsService, scope: NatsScope, args: GetMessageArgs) -> Rendered:
    m = await ops.get_message(scope, args.stream, args.seq, args.lastBySubject, args.offset, args.encoding)
    head = "".join(f"\n- {k}: {v}" for k, v in m.headers.items())
    return MessageOut(message=m), f"**{m.stream}** #{m.seq} on `{m.subject}` at {m.time}{head}\n\n{_show(m.payload)}"


async def consumer_list(ops: OpsService, _scope: NatsScope, args: StreamPageArgs) -> Rendered:
    consumers, page = await ops.consumer_list(args.stream, args.limit, args.cursor)
    rows = [f"- **{c.name}**: {c.numPending} pending, {c.numAckPending} unacked" for c in consumers]
    return ConsumerListOut(consumers=consumers, **page.model_dump()), _page_text(rows, page.nextCursor, "No consumers.")


async def consumer_info(ops: OpsService, _scope: NatsScope, args: ConsumerArgs) -> Rendered:
    c = await ops.consumer_info(args.stream, args.name)
    text = (
        f"**{c.name}** on {c.stream}: filters {', '.join(c.filterSubjects) or 'none'}; {c.numPending} pending, "
        f"{c.numAckPending} unacked, {c.numRedelivered} redelivered; "
        f"delivered up to #{c.deliveredStreamSeq}"
    )
    return ConsumerOut(consumer=c), text


async def kv_list(ops: OpsService, scope: NatsScope, args: PageArgs) -> Rendered:
    buckets, page = await ops.kv_list(scope, args.limit, args.cursor)
    rows = [
        f"- **{b.bucket}**{' (internal)' if b.internal else ''}: {b.values} values, {b.bytes} B, history {b.history}"
        for b in buckets
    ]
    return BucketListOut(buckets=buckets, **page.model_dump()), _page_text(
        rows, page.nextCursor, "No buckets you may see."
    )


async def kv_get(ops: OpsService, _scope: NatsScope, args: KvGetArgs) -> Rendered:
    e = await ops.kv_get(args.bucket, args.key, args.revision, args.offset, args.encoding)
    return KvEntryOut(entry=e), f"**{e.bucket}/{e.key}** revision {e.revision} ({e.operation})\n\n{_show(e.payload)}"


async def kv_history(ops: OpsService, _scope: NatsScope, args: KvHistoryArgs) -> Rendered:
    entries, page = await ops.kv_history(args.bucket, args.key, args.limit, args.cursor, args.encoding)
    rows = [
        f"- revision {e.revision} {e.operation} at {e.created}: {e.payload.data[:80] if e.payload else ''}"
        for e in entries
    ]
    return KvHistoryOut(entries=entries, **page.model_dump()), _page_text(rows, page.nextCursor, "No history.")


async def kv_keys(ops: OpsService, _scope: NatsScope, args: KvKeysArgs) -> Rendered:
    keys, page = await ops.kv_keys(args.bucket, args.filter, args.limit, args.cursor)
    out = KvKeysOut(bucket=args.bucket, keys=keys, **page.model_dump())
    return out, _page_text([f"- {k}" for k in keys], page.nextCursor, "No keys.")


async def publish(ops: OpsService, _scope: NatsScope, args: PublishArgs) -> Rendered:
    data = decode_payload(args.payload, args.encoding, ops.limits.max_publish_bytes)
    await ops.publish(args.subject, data, args.headers)
    return PublishOut(subject=args.subject, bytes=len(data)), f"Published {len(data)} bytes to `{args.subject}`."


async def request(ops: OpsService, _scope: NatsScope, args: RequestArgs) -> Rendered:
    data = decode_payload(args.payload, args.encoding, ops.limits.max_publish_bytes)
    reply, headers, payload = await ops.request(args.subject, data, args.headers, args.timeoutMs, args.replyEncoding)
    out = RequestOut(subject=args.subject, replySubject=reply, headers=headers, payload=payload)
    return out, f"Reply from `{args.subject}`:\n\n{_show(payload)}"


async def stream_create(ops: OpsService, _scope: NatsScope, args: StreamCreateArgs) -> Rendered:
    config = stream_config(
        args.name,
        args.subjects,
        description=args.description,
        storage=args.storage,
        retention=args.retention,
        replicas=args.replicas,
        max_msgs=args.maxMsgs,
        max_bytes=args.maxBytes,
        max_age_s=args.maxAgeSeconds,
        max_msg_size=args.maxMsgSize,
        max_msgs_per_subject=args.maxMsgsPerSubject,
        discard=args.discard,
        duplicate_window_s=args.duplicateWindowSeconds,
    )
    d = await ops.stream_create(config)
    return StreamOut(stream=d), f"Created stream **{d.name}** on {', '.join(d.subjects)}."


_UPDATE_FIELDS = {
    "subjects": "subjects",
    "description": "description",
    "maxMsgs": "max_msgs",
    "maxBytes": "max_bytes",
    "maxAgeSeconds": "max_age",
    "maxMsgSize": "max_msg_size",
    "maxMsgsPerSubject": "max_msgs_per_subject",
    "discard": "discard",
    "replicas": "num_replicas",
}


async def stream_update(ops: OpsService, _scope: NatsScope, args: StreamUpdateArgs) -> Rendered:
    given = args.model_dump(exclude_none=True, exclude={"name"})
    if not given:
        raise InvalidArgument("give at least one setting to change")
    d = await ops.stream_update(args.name, {_UPDATE_FIELDS[k]: v for k, v in given.items()})
    return StreamOut(stream=d), f"Updated stream **{d.name}** ({', '.join(sorted(given))})."


async def stream_purge(ops: OpsService, _scope: NatsScope, args: StreamPurgeArgs) -> Rendered:
    d = await ops.stream_purge(args.name, args.subject, args.keep)
    return StreamOut(stream=d), f"Purged stream **{d.name}**: {d.messages} messages left."


async def stream_delete(ops: OpsService, _scope: NatsScope, args: StreamDeleteArgs) -> Rendered:
    await ops.stream_delete(args.name)
    return DeletedOut(deleted=True), f"Deleted stream **{args.name}** and all its messages."


async def consumer_create(ops: OpsService, _scope: NatsScope, args: ConsumerCreateArgs) -> Rendered:
    config = consumer_config(
        args.name,
        filter_subjects=args.filterSubjects,
        deliver_policy=args.deliverPolicy,
        opt_start_seq=args.optStartSeq,
        ack_policy=args.ackPolicy,
        ack_wait_s=args.ackWaitSeconds,
        max_deliver=args.maxDeliver,
        description=args.description,
        inactive_threshold_s=args.inactiveThresholdSeconds,
    )
    c = await ops.consumer_create(args.stream, config)
    return ConsumerOut(consumer=c), f"Consumer **{c.name}** on {c.stream}: {c.numPending} pending."


async def consumer_delete(ops: OpsService, _scope: NatsScope, args: ConsumerArgs) -> Rendered:
    await ops.consumer_delete(args.stream, args.name)
    return DeletedOut(deleted=True), f"Deleted consumer **{args.name}** of {args.stream}."


async def kv_put(ops: OpsService, _scope: NatsScope, args: KvPutArgs) -> Rendered:
    data = decode_payload(args.value, args.encoding, ops.limits.max_publish_bytes)
    revision = await ops.kv_put(args.bucket, args.key, data)
    return KvPutOut(
        bucket=args.bucket, key=args.key, revision=revision
    ), f"Put {args.bucket}/{args.key} (revision {revision})."


async def kv_delete(ops: OpsService, _scope: NatsScope, args: KvDeleteArgs) -> Rendered:
    await ops.kv_delete(args.bucket, args.key, args.purge)
    return DeletedOut(deleted=True), f"{'Purged' if args.purge else 'Deleted'} {args.bucket}/{args.key}."


# ---- the table ----------------------------------------------------------------------------------

OpsHandler = Callable[[OpsService, NatsScope, Any], Awaitable[Rendered]]


@dataclass(frozen=True)
class OpsSpec:
    """One nats_* tool (the same shape as a ToolSpec; its handler gets the ops facade and the caller's scope)."""

    suffix: str
    title: str
    description: str
    args: type[Args]
    out: type[Out]
    handler: OpsHandler
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False


_R = {"read_only": True, "idempotent": True}
OPS_TOOLS: list[OpsSpec] = [
    OpsSpec(
        "nats_server_info",
        "NATS server info",
        "The connected NATS server: version, cluster, JetStream on/off, the account's "
        "JetStream usage and limits, and monitoring figures if configured. Start here to check NATS health.",
        NoArgs,
        ServerInfoOut,
        server_info,
        **_R,
    ),
    OpsSpec(
        "nats_stream_list",
        "List streams",
        "JetStream streams you may read, by name, with subjects, message counts and sizes. "
        "Paged (nextCursor). Use nats_stream_info for one stream's limits.",
        PageArgs,
        StreamListOut,
        stream_list,
        **_R,
    ),
    OpsSpec(
        "nats_stream_info",
        "Stream info",
        "One stream's configuration (limits, retention, storage) and state (messages, "
        "sequence range, consumers, cluster leader).",
        StreamArgs,
        StreamOut,
        stream_info,
        **_R,
    ),
    OpsSpec(
        "nats_stream_get_message",
        "Get stream message",
        "Read one stored message of a stream without consuming it: by sequence, or "
        "the newest on a subject (lastBySubject). Payloads show as text or base64/hex, in slices (offset).",
        GetMessageArgs,
        MessageOut,
        stream_get_message,
        **_R,
    ),
    OpsSpec(
        "nats_consumer_list",
        "List consumers",
        "The consumers of a stream with their backlog (pending, unacked). Paged.",
        StreamPageArgs,
        ConsumerListOut,
        consumer_list,
        **_R,
    ),
    OpsSpec(
        "nats_consumer_info",
        "Consumer info",
        "One consumer's configuration and progress: pending, unacked and redelivered "
        "counts, delivered and ack-floor sequences. Use it to diagnose a stuck or lagging consumer.",
        ConsumerArgs,
        ConsumerOut,
        consumer_info,
        **_R,
    ),
    OpsSpec(
        "nats_kv_list",
        "List KV buckets",
        "KV buckets you may read, with value counts, sizes, history depth and TTL. Paged.",
        PageArgs,
        BucketListOut,
        kv_list,
        **_R,
    ),
    OpsSpec(
        "nats_kv_get",
        "Get KV value",
        "The current value of a key (or a past revision). Values show as text or base64/hex, in slices (offset).",
        KvGetArgs,
        KvEntryOut,
        kv_get,
        **_R,
    ),
    OpsSpec(
        "nats_kv_history",
        "KV key history",
        "Past revisions of one key, newest first (puts, deletes, purges). Paged.",
        KvHistoryArgs,
        KvHistoryOut,
        kv_history,
        **_R,
    ),
    OpsSpec(
        "nats_kv_keys",
        "List KV keys",
        "Live keys of a bucket, sorted, optionally matching a pattern (orders.>). Paged.",
        KvKeysArgs,
        KvKeysOut,
        kv_keys,
        **_R,
    ),
    OpsSpec(
        "nats_publish",
        "Publish message",
        "Publish one message to a subject (core NATS; a stream capturing the subject stores it). "
        "Fire and forget: use nats_request when you need an answer.",
        PublishArgs,
        PublishOut,
        publish,
    ),
    OpsSpec(
        "nats_request",
        "Request and reply",
        "Send a request to a service subject and wait (timeoutMs) for its first reply. "
        "not_found means no service listens there.",
        RequestArgs,
        RequestOut,
        request,
    ),
    OpsSpec(
        "nats_stream_create",
        "Create stream",
        "Create a stream capturing the given subjects, with limits. Fails with conflict if "
        "the name exists with another configuration or the subjects overlap another stream.",
        StreamCreateArgs,
        StreamOut,
        stream_create,
        idempotent=True,
    ),
    OpsSpec(
        "nats_stream_update",
        "Update stream",
        "Change a stream's subjects or limits (only the settings you give). Lowering limits can drop stored messages.",
        StreamUpdateArgs,
        StreamOut,
        stream_update,
        destructive=True,
        idempotent=True,
    ),
    OpsSpec(
        "nats_stream_purge",
        "Purge stream",
        "Delete a stream's messages (all, one subject's, or all but the newest keep) and "
        "keep the stream. Cannot be undone.",
        StreamPurgeArgs,
        StreamOut,
        stream_purge,
        destructive=True,
    ),
    OpsSpec(
        "nats_stream_delete",
        "Delete stream",
        "Delete a stream with all its messages and consumers. Cannot be undone.",
        StreamDeleteArgs,
        DeletedOut,
        stream_delete,
        destructive=True,
    ),
    OpsSpec(
        "nats_consumer_create",
        "Create consumer",
        "Create (or confirm) a durable pull consumer on a stream, optionally filtered "
        "by subjects. Push consumers are not offered.",
        ConsumerCreateArgs,
        ConsumerOut,
        consumer_create,
        idempotent=True,
    ),
    OpsSpec(
        "nats_consumer_delete",
        "Delete consumer",
        "Delete a consumer (its delivery state is lost; the messages stay).",
        ConsumerArgs,
        DeletedOut,
        consumer_delete,
        destructive=True,
    ),
    OpsSpec(
        "nats_kv_put",
        "Put KV value",
        "Set a key's value in a KV bucket (a new revision; history is kept up to the bucket's depth).",
        KvPutArgs,
        KvPutOut,
        kv_put,
    ),
    OpsSpec(
        "nats_kv_delete",
        "Delete KV key",
        "Delete a key (a delete marker; history stays) or, with purge, drop its history too.",
        KvDeleteArgs,
        DeletedOut,
        kv_delete,
        destructive=True,
    ),
]
