"""The ``nats_stream_*`` tools: streams listed, inspected, read without consuming, created, changed, purged, deleted."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nats_mcp.api.schema import StreamName, SubjectName
from nats_mcp.api.tools.base import Args, OpsSpec, Out, Rendered
from nats_mcp.api.tools.nats_common import (
    DESC,
    DISCARD,
    ENC,
    READ_HINTS,
    REPLICAS,
    STREAM_DOC,
    DeletedOut,
    PageArgs,
    PageOut,
    PayloadEnc,
    page_text,
    show,
)
from nats_mcp.coord.errors import InvalidArgument
from nats_mcp.coord.natsops.models import StoredMessage, StreamDetail, StreamSummary
from nats_mcp.coord.natsops.service import NatsScope, OpsService, stream_config
from nats_mcp.security.needs import NatsAccess

# ---- inputs -------------------------------------------------------------------------------------


class StreamArgs(Args):
    stream: StreamName = Field(description=STREAM_DOC, max_length=255)


class GetMessageArgs(StreamArgs):
    seq: int | None = Field(default=None, ge=1, description="The message's stream sequence.")
    lastBySubject: SubjectName | None = Field(
        default=None, max_length=1024, description="Instead of seq: the newest message on this subject (no wildcards)."
    )
    offset: int = Field(default=0, ge=0, description="Payload byte offset to show from (payload.nextOffset).")
    encoding: PayloadEnc = Field(default="auto", description=ENC)


class StreamCreateArgs(Args):
    name: StreamName = Field(description=STREAM_DOC, max_length=255)
    subjects: list[SubjectName] = Field(
        min_length=1, max_length=64, description="Subjects the stream captures (wildcards ok)."
    )
    description: str | None = Field(default=None, max_length=1024, description=DESC)
    storage: Literal["file", "memory"] = Field(default="file", description="Where messages are stored.")
    retention: Literal["limits", "interest", "workqueue"] = Field(
        default="limits",
        description="limits: keep up to the limits; interest: while consumers need them; "
        "workqueue: until acknowledged once.",
    )
    replicas: int = Field(default=1, ge=1, le=5, description=REPLICAS)
    maxMsgs: int = Field(default=-1, ge=-1, description="Most messages kept; -1: unlimited.")
    maxBytes: int = Field(default=-1, ge=-1, description="Most bytes kept; -1: unlimited.")
    maxAgeSeconds: float = Field(default=0, ge=0, description="Oldest message age kept, in seconds; 0: unlimited.")
    maxMsgSize: int = Field(default=-1, ge=-1, description="Largest message accepted, in bytes; -1: unlimited.")
    maxMsgsPerSubject: int = Field(default=-1, ge=-1, description="Most messages kept per subject; -1: unlimited.")
    discard: Literal["old", "new"] = Field(default="old", description=DISCARD)
    duplicateWindowSeconds: float | None = Field(
        default=None, ge=0, description="Window for deduplicating by Nats-Msg-Id, in seconds (server default: 120)."
    )


class StreamUpdateArgs(Args):
    name: StreamName = Field(description=STREAM_DOC, max_length=255)
    subjects: list[SubjectName] | None = Field(default=None, min_length=1, max_length=64, description="New subjects.")
    description: str | None = Field(default=None, max_length=1024, description=DESC)
    maxMsgs: int | None = Field(default=None, ge=-1, description="Most messages kept; -1: unlimited.")
    maxBytes: int | None = Field(default=None, ge=-1, description="Most bytes kept; -1: unlimited.")
    maxAgeSeconds: float | None = Field(default=None, ge=0, description="Oldest age kept, in seconds; 0: unlimited.")
    maxMsgSize: int | None = Field(default=None, ge=-1, description="Largest message accepted; -1: unlimited.")
    maxMsgsPerSubject: int | None = Field(default=None, ge=-1, description="Most messages per subject; -1: unlimited.")
    discard: Literal["old", "new"] | None = Field(default=None, description=DISCARD)
    replicas: int | None = Field(default=None, ge=1, le=5, description=REPLICAS)


class StreamPurgeArgs(Args):
    name: StreamName = Field(description=STREAM_DOC, max_length=255)
    subject: str | None = Field(default=None, max_length=1024, description="Only messages on this subject/pattern.")
    keep: int | None = Field(default=None, ge=0, description="Keep this many newest messages.")


class StreamDeleteArgs(Args):
    name: StreamName = Field(description=STREAM_DOC, max_length=255)


# ---- outputs ------------------------------------------------------------------------------------


class StreamListOut(PageOut):
    streams: list[StreamSummary]


class StreamOut(Out):
    stream: StreamDetail


class MessageOut(Out):
    message: StoredMessage


# ---- handlers -----------------------------------------------------------------------------------


async def stream_list(ops: OpsService, scope: NatsScope, args: PageArgs) -> Rendered:
    streams, page = await ops.stream_list(scope, args.limit, args.cursor)
    rows = [
        f"- **{s.name}**{' (internal)' if s.internal else ''}: {', '.join(s.subjects)} — {s.messages} msgs, "
        f"{s.bytes} B, {s.consumers} consumers"
        for s in streams
    ]
    return StreamListOut(streams=streams, **page.model_dump()), page_text(
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
    return MessageOut(message=m), f"**{m.stream}** #{m.seq} on `{m.subject}` at {m.time}{head}\n\n{show(m.payload)}"


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


# ---- the table ----------------------------------------------------------------------------------


STREAM_READS: tuple[OpsSpec, ...] = (
    OpsSpec(
        "nats_stream_list",
        "List streams",
        "JetStream streams you may read, by name, with subjects, message counts and sizes. "
        "Paged (nextCursor). Use nats_stream_info for one stream's limits.",
        PageArgs,
        StreamListOut,
        stream_list,
        **READ_HINTS,
        needs=(NatsAccess("read"),),
    ),
    OpsSpec(
        "nats_stream_info",
        "Stream info",
        "One stream's configuration (limits, retention, storage) and state (messages, "
        "sequence range, consumers, cluster leader).",
        StreamArgs,
        StreamOut,
        stream_info,
        **READ_HINTS,
        needs=(NatsAccess("read", streams="stream"),),
    ),
    OpsSpec(
        "nats_stream_get_message",
        "Get stream message",
        "Read one stored message of a stream without consuming it: by sequence, or "
        "the newest on a subject (lastBySubject). Payloads show as text or base64/hex, in slices (offset).",
        GetMessageArgs,
        MessageOut,
        stream_get_message,
        **READ_HINTS,
        needs=(NatsAccess("read", streams="stream", subjects="lastBySubject"),),
    ),
)


STREAM_WRITES: tuple[OpsSpec, ...] = (
    OpsSpec(
        "nats_stream_create",
        "Create stream",
        "Create a stream capturing the given subjects, with limits. Fails with conflict if "
        "the name exists with another configuration or the subjects overlap another stream.",
        StreamCreateArgs,
        StreamOut,
        stream_create,
        idempotent=True,
        needs=(NatsAccess("write", streams="name", subjects="subjects"),),
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
        needs=(NatsAccess("write", streams="name", subjects="subjects"),),
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
        needs=(NatsAccess("write", streams="name"),),
    ),
    OpsSpec(
        "nats_stream_delete",
        "Delete stream",
        "Delete a stream with all its messages and consumers. Cannot be undone.",
        StreamDeleteArgs,
        DeletedOut,
        stream_delete,
        destructive=True,
        needs=(NatsAccess("write", streams="name"),),
    ),
)
