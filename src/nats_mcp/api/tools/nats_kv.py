"""The ``nats_kv_*`` tools: KV buckets listed, keys read (with history), put and deleted."""

from __future__ import annotations

from pydantic import Field

from nats_mcp.api.schema import BucketName
from nats_mcp.api.tools.base import Args, OpsSpec, Out, Rendered
from nats_mcp.api.tools.nats_common import (
    BUCKET_DOC,
    CURSOR,
    ENC,
    READ_HINTS,
    DeletedOut,
    InEnc,
    PageArgs,
    PageOut,
    PayloadEnc,
    page_limit,
    page_text,
    show,
)
from nats_mcp.coord.natsops.models import BucketSummary, KvEntry
from nats_mcp.coord.natsops.service import NatsScope, OpsService, decode_payload
from nats_mcp.security.needs import NatsAccess

# ---- inputs -------------------------------------------------------------------------------------


class BucketArgs(Args):
    bucket: BucketName = Field(description=BUCKET_DOC, max_length=240)


class KvKeyArgs(BucketArgs):
    key: str = Field(description="The key (letters, digits and -/_=.).", max_length=1024)


class KvGetArgs(KvKeyArgs):
    revision: int | None = Field(default=None, ge=1, description="A past revision (from nats_kv_history).")
    offset: int = Field(default=0, ge=0, description="Value byte offset to show from (payload.nextOffset).")
    encoding: PayloadEnc = Field(default="auto", description=ENC)


class KvHistoryArgs(KvKeyArgs):
    limit: int = page_limit(10)
    cursor: str | None = Field(default=None, max_length=512, description=CURSOR)
    encoding: PayloadEnc = Field(default="auto", description=ENC)


class KvKeysArgs(BucketArgs):
    filter: str = Field(default=">", max_length=1024, description="Keys matching this NATS pattern, e.g. orders.>.")
    limit: int = page_limit(100)
    cursor: str | None = Field(default=None, max_length=512, description=CURSOR)


class KvPutArgs(KvKeyArgs):
    value: str = Field(description="The value, in `encoding`.")
    encoding: InEnc = Field(default="utf-8", description="How value is written: utf-8 text, base64 or hex.")


class KvDeleteArgs(KvKeyArgs):
    purge: bool = Field(default=False, description="Also drop the key's history (cannot be undone).")


# ---- outputs ------------------------------------------------------------------------------------


class BucketListOut(PageOut):
    buckets: list[BucketSummary]


class KvEntryOut(Out):
    entry: KvEntry


class KvHistoryOut(PageOut):
    entries: list[KvEntry]


class KvKeysOut(PageOut):
    bucket: str
    keys: list[str]


class KvPutOut(Out):
    bucket: str
    key: str
    revision: int


# ---- handlers -----------------------------------------------------------------------------------


async def kv_list(ops: OpsService, scope: NatsScope, args: PageArgs) -> Rendered:
    buckets, page = await ops.kv_list(scope, args.limit, args.cursor)
    rows = [
        f"- **{b.bucket}**{' (internal)' if b.internal else ''}: {b.values} values, {b.bytes} B, history {b.history}"
        for b in buckets
    ]
    return BucketListOut(buckets=buckets, **page.model_dump()), page_text(
        rows, page.nextCursor, "No buckets you may see."
    )


async def kv_get(ops: OpsService, _scope: NatsScope, args: KvGetArgs) -> Rendered:
    e = await ops.kv_get(args.bucket, args.key, args.revision, args.offset, args.encoding)
    return KvEntryOut(entry=e), f"**{e.bucket}/{e.key}** revision {e.revision} ({e.operation})\n\n{show(e.payload)}"


async def kv_history(ops: OpsService, _scope: NatsScope, args: KvHistoryArgs) -> Rendered:
    entries, page = await ops.kv_history(args.bucket, args.key, args.limit, args.cursor, args.encoding)
    rows = [
        f"- revision {e.revision} {e.operation} at {e.created}: {e.payload.data[:80] if e.payload else ''}"
        for e in entries
    ]
    return KvHistoryOut(entries=entries, **page.model_dump()), page_text(rows, page.nextCursor, "No history.")


async def kv_keys(ops: OpsService, _scope: NatsScope, args: KvKeysArgs) -> Rendered:
    keys, page = await ops.kv_keys(args.bucket, args.filter, args.limit, args.cursor)
    out = KvKeysOut(bucket=args.bucket, keys=keys, **page.model_dump())
    return out, page_text([f"- {k}" for k in keys], page.nextCursor, "No keys.")


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


KV_READS: tuple[OpsSpec, ...] = (
    OpsSpec(
        "nats_kv_list",
        "List KV buckets",
        "KV buckets you may read, with value counts, sizes, history depth and TTL. Paged.",
        PageArgs,
        BucketListOut,
        kv_list,
        **READ_HINTS,
        needs=(NatsAccess("read"),),
    ),
    OpsSpec(
        "nats_kv_get",
        "Get KV value",
        "The current value of a key (or a past revision). Values show as text or base64/hex, in slices (offset).",
        KvGetArgs,
        KvEntryOut,
        kv_get,
        **READ_HINTS,
        needs=(NatsAccess("read", buckets="bucket"),),
    ),
    OpsSpec(
        "nats_kv_history",
        "KV key history",
        "Past revisions of one key, newest first (puts, deletes, purges). Paged.",
        KvHistoryArgs,
        KvHistoryOut,
        kv_history,
        **READ_HINTS,
        needs=(NatsAccess("read", buckets="bucket"),),
    ),
    OpsSpec(
        "nats_kv_keys",
        "List KV keys",
        "Live keys of a bucket, sorted, optionally matching a pattern (orders.>). Paged.",
        KvKeysArgs,
        KvKeysOut,
        kv_keys,
        **READ_HINTS,
        needs=(NatsAccess("read", buckets="bucket"),),
    ),
)


KV_WRITES: tuple[OpsSpec, ...] = (
    OpsSpec(
        "nats_kv_put",
        "Put KV value",
        "Set a key's value in a KV bucket (a new revision; history is kept up to the bucket's depth).",
        KvPutArgs,
        KvPutOut,
        kv_put,
        needs=(NatsAccess("write", buckets="bucket"),),
    ),
    OpsSpec(
        "nats_kv_delete",
        "Delete KV key",
        "Delete a key (a delete marker; history stays) or, with purge, drop its history too.",
        KvDeleteArgs,
        DeletedOut,
        kv_delete,
        destructive=True,
        needs=(NatsAccess("write", buckets="bucket"),),
    ),
)
