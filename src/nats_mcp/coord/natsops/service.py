"""The NATS operations domain facade: bounded, cursor-paged, policy-scoped views and changes of streams,
consumers, KV buckets and subjects for the ``nats_*`` tools, with this server's own resources protected.

The guard has already checked every name a call gives against the caller's policy; here lists are cut to
what the caller's :class:`NatsScope` may read, the server's own streams, buckets and subjects are refused
(:mod:`nats_mcp.coord.natsops.guard`), and every output is bounded: pages with cursors, payload slices with
an offset to read on.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from nats_mcp.bus import ops as bus
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import api_prefix
from nats_mcp.bus.errors import (
    JetStreamError,
    JetStreamUnavailable,
    NatsTimeout,
    NoResponders,
    ResourceNotFound,
    nats_edge,
)
from nats_mcp.bus.jstypes import ConsumerConfig, JetStreamContext, KeyValue, StreamConfig, StreamInfo
from nats_mcp.config.settings import Settings
from nats_mcp.coord.errors import Conflict, Forbidden, InvalidArgument, LimitExceeded, NatsUnavailable, NotFound
from nats_mcp.coord.natsops import guard as check
from nats_mcp.coord.natsops.configs import (
    bucket_summary,
    config_dict,
    consumer_config,
    consumer_summary,
    enum_text,
    iso,
    num,
    stream_config,
)
from nats_mcp.coord.natsops.models import (
    BucketSummary,
    ConsumerSummary,
    KvEntry,
    Page,
    Payload,
    StoredMessage,
    StreamDetail,
    StreamSummary,
)
from nats_mcp.coord.natsops.payloads import PayloadEncoding, bounded_headers, check_headers, decode_payload, preview
from nats_mcp.coord.pagination import make_cursor, read_cursor
from nats_mcp.core.lru import LruTable

CURSOR_SCOPE = "nats-ops"
"""What cursors of the nats_* tools are bound to besides the tool and the filters (they are not namespaced)."""
Kind = Literal["subjects", "streams", "buckets"]
Access = Literal["read", "write"]

# JetStream API error codes met here (nats-server's errors.json).
_STREAM_NAME_IN_USE = 10058
_SUBJECTS_OVERLAP = 10065
_CONSUMER_EXISTS = 10148
_CONFLICT_CODES = frozenset({_STREAM_NAME_IN_USE, _SUBJECTS_OVERLAP, _CONSUMER_EXISTS, 10013, 10105})


class NatsScope(Protocol):
    """Which names a caller may read or write (the policy's ``nats`` blocks; see security/policy.py)."""

    def allows(self, kind: Kind, access: Access, name: str) -> bool: ...


@dataclass(frozen=True)
class Listed:
    """One page of names and how it continues."""

    names: list[str]
    page: Page


# ---- error mapping --------------------------------------------------------------------------------


@contextlib.contextmanager
def _nats(what: str) -> Iterator[None]:
    """nats-py's answers as domain errors with a message an agent can act on."""
    try:
        with nats_edge():
            yield
    except ResourceNotFound:  # a KV key (deleted or not) too
        raise NotFound(f"{what}: not found") from None
    except JetStreamUnavailable:
        raise NatsUnavailable("JetStream is not available on this NATS server (or not answering)") from None
    except JetStreamError as exc:
        description = exc.description or "refused"
        if exc.err_code in _CONFLICT_CODES:
            raise Conflict(f"{what}: {description}") from None
        if exc.status == 404:
            raise NotFound(f"{what}: {description}") from None
        raise InvalidArgument(f"{what}: {description}") from None
    except NatsTimeout:
        raise NatsUnavailable(f"{what}: NATS did not answer in time; the call can be retried") from None


# ---- the facade -----------------------------------------------------------------------------------


class OpsService:
    """The nats_* operations of one server process (stateless: every call reads NATS)."""

    def __init__(self, conn: NatsConnection, settings: Settings) -> None:
        self._conn = conn
        self._settings = settings
        self.limits = settings.nats_ops
        self._prefix = api_prefix(settings.nats.jetstream_domain)
        self._inbox_prefix = settings.nats.inbox_prefix
        # Bound buckets (binding one costs a stream-info round trip), per JetStream context: a new connection
        # rebinds; a failed call drops its bucket's binding (it may have been deleted or recreated).
        self._buckets: LruTable[str, tuple[JetStreamContext, KeyValue]] = LruTable(256)

    @contextlib.asynccontextmanager
    async def _bucket(self, bucket: str, what: str) -> AsyncIterator[KeyValue]:
        js = self._conn.jetstream
        with _nats(what):
            known = self._buckets.get(bucket)
            if known is None or known[0] is not js:
                known = (js, await bus.kv(js, bucket))
                self._buckets.put(bucket, known)
            try:
                yield known[1]
            except Exception:
                self._buckets.pop(bucket)
                raise

    # -- paging helpers ---------------------------------------------------------------------------

    def _limit(self, limit: int) -> int:
        if limit > self.limits.max_page:
            raise LimitExceeded(f"limit {limit} is above nats_ops.max_page ({self.limits.max_page})")
        return limit

    def _page(
        self,
        tool: str,
        filters: dict[str, Any],
        names: bus.Names,
        keep: Callable[[str], bool],
        limit: int,
        cursor: str | None,
    ) -> Listed:
        """``limit`` names after the cursor's, of those ``keep`` accepts; the cursor holds the last name shown.

        When the scan stopped at ``max_scan`` the pages cover the names scanned and ``total`` is None.
        """
        after = ""
        if cursor is not None:
            position = read_cursor(cursor, tool, CURSOR_SCOPE, filters)
            after = position.get("after", "")
            if not isinstance(after, str) or not after:
                raise InvalidArgument("the cursor is malformed: pass back nextCursor exactly as returned")
        visible = [n for n in names.names if keep(n)]
        rest = [n for n in visible if n > after]
        shown, more = rest[:limit], len(rest) > limit
        next_cursor = make_cursor(tool, CURSOR_SCOPE, filters, {"after": shown[-1]}) if more else None
        total = len(visible) if names.complete else None
        return Listed(shown, Page(nextCursor=next_cursor, hasMore=more, total=total))

    # -- server -----------------------------------------------------------------------------------

    async def server_info(self) -> dict[str, Any]:
        nc = self._conn.client
        info: dict[str, Any] = {"server": bus.connection_info(nc), "account": None, "monitor": None}
        with contextlib.suppress(JetStreamError, NatsTimeout), nats_edge():
            account = await self._conn.jetstream.account_info()
            limits = account.limits
            info["account"] = {
                "memory": account.memory,
                "storage": account.storage,
                "streams": account.streams,
                "consumers": account.consumers,
                "domain": account.domain,
                "limits": {
                    "maxMemory": limits.max_memory,
                    "maxStorage": limits.max_storage,
                    "maxStreams": limits.max_streams,
                    "maxConsumers": limits.max_consumers,
                },
                "api": {"total": account.api.total, "errors": account.api.errors},
            }
        url = self.limits.monitor_url
        if url:
            try:
                varz = await bus.monitor(url, "varz")
                jsz = await bus.monitor(url, "jsz")
                info["monitor"] = {
                    "uptime": varz.get("uptime"),
                    "connections": varz.get("connections"),
                    "totalConnections": varz.get("total_connections"),
                    "inMsgs": varz.get("in_msgs"),
                    "outMsgs": varz.get("out_msgs"),
                    "inBytes": varz.get("in_bytes"),
                    "outBytes": varz.get("out_bytes"),
                    "slowConsumers": varz.get("slow_consumers"),
                    "mem": varz.get("mem"),
                    "cpu": varz.get("cpu"),
                    "cluster": (varz.get("cluster") or {}).get("name"),
                    "jetstream": {
                        k: jsz.get(k) for k in ("streams", "consumers", "messages", "bytes", "memory", "storage", "api")
                    },
                }
            except Exception as exc:  # the monitor is an extra: its absence is reported, never fatal
                info["monitor"] = {"error": f"{type(exc).__name__}: monitoring endpoint not readable"}
        return info

    # -- streams ----------------------------------------------------------------------------------

    async def stream_list(self, scope: NatsScope, limit: int, cursor: str | None) -> tuple[list[StreamSummary], Page]:
        limit = self._limit(limit)
        with _nats("listing streams"):
            names = await bus.stream_names(self._conn.client, self._prefix, self.limits.max_scan)
            listed = self._page(
                "nats_stream_list", {}, names, lambda n: scope.allows("streams", "read", n), limit, cursor
            )
            infos = await bus.stream_infos(self._conn.jetstream, listed.names)
        return [self._summary(i) for i in infos], listed.page

    async def stream_info(self, name: str) -> StreamDetail:
        check.stream_name(name)
        with _nats(f"stream {name}"):
            info = await self._conn.jetstream.stream_info(name)
        return self._detail(info)

    async def get_message(
        self,
        scope: NatsScope,
        stream: str,
        seq: int | None,
        last_by_subject: str | None,
        offset: int,
        encoding: PayloadEncoding,
    ) -> StoredMessage:
        """One stored message, if its subject is on the caller's ``subjects.read`` list (a stream may hold more)."""
        check.stream_name(stream)
        if (seq is None) == (last_by_subject is None):
            raise InvalidArgument("give exactly one of seq and lastBySubject")
        if last_by_subject is not None:
            check.subject(last_by_subject, wildcards=False)
        check.readable_content(stream=stream)
        with _nats(f"message of stream {stream}"):
            msg = await bus.get_message(self._conn.jetstream, stream, seq, last_by_subject)
        if not scope.allows("subjects", "read", str(msg.subject)):
            raise Forbidden(f"message {msg.seq} of {stream} is on subject {msg.subject}, which you may not read")
        return StoredMessage(
            stream=stream,
            seq=int(msg.seq or 0),
            subject=str(msg.subject or ""),
            time=iso(msg.time),
            headers=bounded_headers(msg.headers),
            payload=preview(msg.data or b"", offset, self.limits.preview_bytes, encoding),
        )

    async def stream_create(self, config: StreamConfig) -> StreamDetail:
        name = check.writable_stream(config.name or "")
        self._writable_subjects(config.subjects or [])
        if not config.subjects:
            raise InvalidArgument("give at least one subject (a stream named after itself would capture its name)")
        with _nats(f"creating stream {name}"):
            info = await bus.add_stream(self._conn.jetstream, config)
        return self._detail(info)

    async def stream_update(self, name: str, changes: dict[str, Any]) -> StreamDetail:
        check.writable_stream(name)
        if "subjects" in changes:
            self._writable_subjects(changes["subjects"])
        with _nats(f"stream {name}"):
            current = (await self._conn.jetstream.stream_info(name)).config
            merged = StreamConfig.from_response({**current.as_dict(), **config_dict(changes)})
            info = await bus.update_stream(self._conn.jetstream, merged)
        return self._detail(info)

    async def stream_purge(self, name: str, subject: str | None, keep: int | None) -> StreamDetail:
        check.writable_stream(name)
        if subject is not None:
            check.subject(subject, wildcards=True)
        with _nats(f"purging stream {name}"):
            await bus.purge_stream(self._conn.jetstream, name, subject, keep)
            info = await self._conn.jetstream.stream_info(name)
        return self._detail(info)

    async def stream_delete(self, name: str) -> None:
        check.writable_stream(name)
        with _nats(f"deleting stream {name}"):
            await bus.delete_stream(self._conn.jetstream, name)

    def _writable_subjects(self, subjects: list[str]) -> None:
        for s in subjects:
            check.writable_subject(s, wildcards=True, inbox_prefix=self._inbox_prefix)

    # -- consumers --------------------------------------------------------------------------------

    async def consumer_list(self, stream: str, limit: int, cursor: str | None) -> tuple[list[ConsumerSummary], Page]:
        check.stream_name(stream)
        limit = self._limit(limit)
        with _nats(f"consumers of stream {stream}"):
            names = await bus.consumer_names(self._conn.client, self._prefix, stream, self.limits.max_scan)
            listed = self._page("nats_consumer_list", {"stream": stream}, names, lambda _n: True, limit, cursor)
            infos = await bus.consumer_infos(self._conn.jetstream, stream, listed.names)
        return [consumer_summary(i) for i in infos], listed.page

    async def consumer_info(self, stream: str, name: str) -> ConsumerSummary:
        check.stream_name(stream)
        check.stream_name(name, "consumer")
        with _nats(f"consumer {name} of stream {stream}"):
            return consumer_summary(await self._conn.jetstream.consumer_info(stream, name))

    async def consumer_create(self, stream: str, config: ConsumerConfig) -> ConsumerSummary:
        check.writable_stream(stream)
        check.stream_name(config.durable_name or "", "consumer")
        for s in config.filter_subjects or []:
            check.subject(s, wildcards=True)
        with _nats(f"creating consumer {config.durable_name} on stream {stream}"):
            return consumer_summary(await bus.add_consumer(self._conn.jetstream, stream, config))

    async def consumer_delete(self, stream: str, name: str) -> None:
        check.writable_stream(stream)
        check.stream_name(name, "consumer")
        with _nats(f"consumer {name} of stream {stream}"):
            await bus.delete_consumer(self._conn.jetstream, stream, name)

    # -- KV ---------------------------------------------------------------------------------------

    async def kv_list(self, scope: NatsScope, limit: int, cursor: str | None) -> tuple[list[BucketSummary], Page]:
        limit = self._limit(limit)
        with _nats("listing buckets"):
            names = await bus.stream_names(self._conn.client, self._prefix, self.limits.max_scan)
            buckets = bus.Names([n[3:] for n in names.names if n.startswith("KV_")], names.complete)
            listed = self._page(
                "nats_kv_list", {}, buckets, lambda b: scope.allows("buckets", "read", b), limit, cursor
            )
            infos = await bus.stream_infos(self._conn.jetstream, [f"KV_{b}" for b in listed.names])
        return [bucket_summary(i) for i in infos], listed.page

    async def kv_get(
        self, bucket: str, key: str, revision: int | None, offset: int, encoding: PayloadEncoding
    ) -> KvEntry:
        check.bucket_name(bucket)
        check.kv_key(key)
        check.readable_content(bucket=bucket)
        async with self._bucket(bucket, f"key {key} of bucket {bucket}") as kv:
            entry = await kv.get(key, revision=revision)
        return self._entry(bucket, entry, offset, self.limits.preview_bytes, encoding)

    async def kv_history(
        self, bucket: str, key: str, limit: int, cursor: str | None, encoding: PayloadEncoding
    ) -> tuple[list[KvEntry], Page]:
        """Revisions of a key, newest first (JetStream keeps at most 64 per key)."""
        check.bucket_name(bucket)
        check.kv_key(key)
        check.readable_content(bucket=bucket)
        limit = self._limit(limit)
        filters = {"bucket": bucket, "key": key}
        before = None
        if cursor is not None:
            before = read_cursor(cursor, "nats_kv_history", CURSOR_SCOPE, filters).get("before")
            if not isinstance(before, int) or isinstance(before, bool) or before < 1:
                raise InvalidArgument("the cursor is malformed: pass back nextCursor exactly as returned")
        async with self._bucket(bucket, f"history of key {key} in bucket {bucket}") as kv:
            entries = sorted(await kv.history(key), key=lambda e: -(e.revision or 0))
        if before is not None:
            entries = [e for e in entries if (e.revision or 0) < before]
        shown, more = entries[:limit], len(entries) > limit
        # Many revisions in one result: each value gets a share of the preview budget.
        budget = max(64, self.limits.preview_bytes // max(1, len(shown)))
        out = [self._entry(bucket, e, 0, budget, encoding) for e in shown]
        next_cursor = (
            make_cursor("nats_kv_history", CURSOR_SCOPE, filters, {"before": shown[-1].revision}) if more else None
        )
        return out, Page(nextCursor=next_cursor, hasMore=more, total=len(entries) if before is None else None)

    async def kv_keys(self, bucket: str, pattern: str, limit: int, cursor: str | None) -> tuple[list[str], Page]:
        check.bucket_name(bucket)
        check.subject(pattern, wildcards=True)
        check.readable_content(bucket=bucket)
        limit = self._limit(limit)
        async with self._bucket(bucket, f"keys of bucket {bucket}") as kv:
            names = await bus.kv_keys(kv, pattern, self.limits.max_scan)
        listed = self._page(
            "nats_kv_keys", {"bucket": bucket, "filter": pattern}, names, lambda _k: True, limit, cursor
        )
        return listed.names, listed.page

    async def kv_put(self, bucket: str, key: str, value: bytes) -> int:
        check.writable_bucket(bucket)
        check.kv_key(key)
        async with self._bucket(bucket, f"putting key {key} in bucket {bucket}") as kv:
            return await kv.put(key, value)

    async def kv_delete(self, bucket: str, key: str, purge: bool) -> None:
        check.writable_bucket(bucket)
        check.kv_key(key)
        async with self._bucket(bucket, f"deleting key {key} in bucket {bucket}") as kv:
            await (kv.purge(key) if purge else kv.delete(key))

    # -- core NATS --------------------------------------------------------------------------------

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None) -> None:
        check.writable_subject(subject, wildcards=False, inbox_prefix=self._inbox_prefix)
        with _nats(f"publishing to {subject}"):
            await bus.publish(self._conn.client, subject, payload, check_headers(headers))

    async def request(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, timeout_ms: int, encoding: PayloadEncoding
    ) -> tuple[str, dict[str, str], Payload]:
        check.writable_subject(subject, wildcards=False, inbox_prefix=self._inbox_prefix)
        if timeout_ms > self.limits.max_request_timeout_ms:
            raise LimitExceeded(
                f"timeout is above nats_ops.max_request_timeout_ms ({self.limits.max_request_timeout_ms})"
            )
        try:
            with nats_edge():
                reply = await bus.request(
                    self._conn.client, subject, payload, check_headers(headers), timeout_ms / 1000
                )
        except NoResponders:
            raise NotFound(f"no service is listening on {subject} (no responders)") from None
        except NatsTimeout:
            raise NatsUnavailable(f"no reply on {subject} within {timeout_ms} ms; the call can be retried") from None
        return (
            reply.subject,
            bounded_headers(reply.headers),
            preview(reply.data, 0, self.limits.preview_bytes, encoding),
        )

    # -- rendering --------------------------------------------------------------------------------

    def _entry(self, bucket: str, entry: Any, offset: int, budget: int, encoding: PayloadEncoding) -> KvEntry:
        op = str(entry.operation or "PUT")
        created = entry.created
        return KvEntry(
            bucket=bucket,
            key=entry.key,
            revision=int(entry.revision or 0),
            operation=op if op in ("PUT", "DEL", "PURGE") else "PUT",  # type: ignore[arg-type]
            created=iso(datetime.fromtimestamp(created / 1e9, UTC) if isinstance(created, int) else created),
            payload=preview(entry.value or b"", offset, budget, encoding) if op == "PUT" else None,
        )

    @staticmethod
    def _summary(info: StreamInfo) -> StreamSummary:
        c, s = info.config, info.state
        return StreamSummary(
            name=str(c.name),
            description=c.description,
            subjects=list(c.subjects or []),
            storage=enum_text(c.storage, "file"),
            retention=enum_text(c.retention, "limits"),
            replicas=c.num_replicas or 1,
            messages=s.messages,
            bytes=s.bytes,
            firstSeq=s.first_seq,
            lastSeq=s.last_seq,
            consumers=s.consumer_count,
            created=iso(getattr(info, "created", None)),
            internal=check.internal_stream(str(c.name)),
        )

    def _detail(self, info: StreamInfo) -> StreamDetail:
        c, s = info.config, info.state
        return StreamDetail(
            **self._summary(info).model_dump(),
            maxMsgs=num(c.max_msgs),
            maxBytes=num(c.max_bytes),
            maxAgeSeconds=float(c.max_age or 0),
            maxMsgSize=num(c.max_msg_size),
            maxMsgsPerSubject=c.max_msgs_per_subject,
            discard=enum_text(c.discard, "old"),
            duplicateWindowSeconds=float(c.duplicate_window or 0),
            numSubjects=getattr(s, "num_subjects", None),
            numDeleted=s.num_deleted,
            allowDirect=bool(c.allow_direct),
            sealed=bool(c.sealed),
            denyDelete=bool(c.deny_delete),
            denyPurge=bool(c.deny_purge),
            cluster=info.cluster.name if info.cluster else None,
            leader=info.cluster.leader if info.cluster else None,
        )


__all__ = [
    "Forbidden",
    "NatsScope",
    "OpsService",
    "consumer_config",
    "decode_payload",
    "preview",
    "stream_config",
]
