"""The NATS resource declarations: the stream, consumer and KV-bucket settings of the coordination domain, in one place.

Beside :mod:`nats_mcp.bus.layout` (which names every resource) this module says what each one is: storage,
retention, limits, dedupe window, consumers' ack settings. The values are nats-py's config types, owned by the
bus; the domain (``coord/``) asks for a spec with plain values from its settings and hands it to
:func:`nats_mcp.bus.setup.ensure_stream` / :func:`ensure_consumer`, never building a config itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamState,
)

from nats_mcp.bus.layout import DIRECTORY_BUCKET, Layout
from nats_mcp.bus.setup import stream_config

__all__ = [
    "BucketSpec",
    "ConsumerConfig",
    "StreamConfig",
    "StreamState",
    "calls_bucket",
    "channel_stream",
    "directory_bucket",
    "dlq_stream",
    "fleet_bucket",
    "identity_bucket",
    "inbox_stream",
    "mover_consumer",
    "operator_consumer",
    "operator_stream",
    "registry_bucket",
    "reservations_bucket",
    "work_consumer",
    "work_events_stream",
    "work_state_bucket",
    "work_stream",
]

DEFAULT_DUPLICATE_WINDOW_S = 120.0
"""Dedupe window (``Nats-Msg-Id``) of the domain's streams; never longer than the stream's max age (the server
refuses that)."""


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """One KV bucket: its name, description and optional per-key TTL (history is always 1)."""

    name: str
    description: str
    ttl_s: float | None = None


# -- streams -----------------------------------------------------------------------------------------


def channel_stream(
    layout: Layout,
    channel: str,
    *,
    description: str,
    max_messages: int,
    max_bytes: int,
    max_age_s: float,
) -> StreamConfig:
    """The stream a channel is stored in: file storage, limits from settings, oldest dropped, direct gets allowed."""
    return stream_config(
        name=layout.channel_stream(channel),
        description=description,
        subjects=[layout.channel_subject(channel)],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_msgs=max_messages,
        max_bytes=max_bytes,
        max_age=max_age_s,
        duplicate_window=min(DEFAULT_DUPLICATE_WINDOW_S, max_age_s),
        allow_direct=True,
    )


def inbox_stream(layout: Layout, *, max_messages: int, max_age_s: float) -> StreamConfig:
    """The inbox stream of a namespace: a per-recipient cap that refuses new mail rather than dropping old."""
    return stream_config(
        name=layout.inbox_stream,
        description=f"direct messages of namespace {layout.namespace}, one subject per recipient",
        subjects=[layout.inbox_subjects],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        max_msgs_per_subject=max_messages,
        discard=DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_age=max_age_s,
        duplicate_window=min(DEFAULT_DUPLICATE_WINDOW_S, max_age_s),
        allow_direct=True,
    )


def work_stream(layout: Layout, *, max_bytes: int | None) -> StreamConfig:
    """The WorkQueue stream of a namespace's work items; ``max_bytes`` 0 or None means unlimited."""
    return stream_config(
        name=layout.work_stream,
        description=f"work queues of namespace {layout.namespace}: one subject per capability, priority and boundary",
        subjects=[layout.work_subjects],
        storage=StorageType.FILE,
        retention=RetentionPolicy.WORK_QUEUE,
        duplicate_window=DEFAULT_DUPLICATE_WINDOW_S,
        allow_direct=True,
        max_bytes=max_bytes or -1,
        discard=DiscardPolicy.NEW,  # a full queue refuses new work; it never drops queued work
    )


def work_events_stream(layout: Layout) -> StreamConfig:
    """The WorkQueue stream capturing the work stream's max-delivery advisories and the deadline timers."""
    return stream_config(
        name=layout.events_stream,
        description=f"max-delivery advisories and deadline timers of namespace {layout.namespace}'s work",
        subjects=[layout.max_deliveries_advisories, layout.events_subjects],
        storage=StorageType.FILE,
        retention=RetentionPolicy.WORK_QUEUE,
        allow_msg_schedules=True,
        duplicate_window=DEFAULT_DUPLICATE_WINDOW_S,
        allow_rollup_hdrs=True,  # the server turns it on with schedules; asking for it avoids an update
    )


def dlq_stream(layout: Layout, *, ttl_s: float) -> StreamConfig:
    """The dead-letter stream of a namespace: one message per item (its own subject), kept ``ttl_s``."""
    return stream_config(
        name=layout.dlq_stream,
        description=f"dead-lettered work items of namespace {layout.namespace}",
        subjects=[layout.dlq_subjects],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        max_age=ttl_s,
        max_msgs_per_subject=1,
        duplicate_window=min(DEFAULT_DUPLICATE_WINDOW_S, ttl_s),
        allow_direct=True,
    )


# -- consumers ---------------------------------------------------------------------------------------


def mover_consumer(layout: Layout) -> ConsumerConfig:
    """The durable consumer of the events stream that moves dead work items and fires deadlines."""
    return ConsumerConfig(
        durable_name=Layout.MOVER_CONSUMER,
        filter_subjects=[layout.max_deliveries_advisories, layout.deadline_due_subjects],
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=30.0,
        max_ack_pending=-1,
    )


def work_consumer(
    layout: Layout,
    capability: str,
    priority: int,
    *,
    ack_wait_s: float,
    max_deliver: int,
    boundary: str | None = None,
) -> ConsumerConfig:
    """The durable pull consumer of one (capability, priority, boundary) of the work stream."""
    return ConsumerConfig(
        durable_name=Layout.work_consumer(capability, priority, boundary),
        filter_subject=layout.work_subject(capability, priority, boundary),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait_s,
        max_deliver=max_deliver,
        max_ack_pending=-1,
    )


# -- operator resources (the nats_* tools) ------------------------------------------------------------


def operator_stream(
    name: str,
    subjects: list[str],
    *,
    description: str | None,
    storage: str,
    retention: str,
    replicas: int,
    max_msgs: int,
    max_bytes: int,
    max_age_s: float,
    max_msg_size: int,
    max_msgs_per_subject: int,
    discard: str,
    duplicate_window_s: float | None,
    allow_direct: bool,
) -> StreamConfig:
    """A stream an operator creates through ``nats_stream_create``: only these settings (no sources, republish...)."""
    return StreamConfig(
        name=name,
        subjects=subjects,
        description=description,
        storage=StorageType(storage),
        retention=RetentionPolicy(retention),
        num_replicas=replicas,
        max_msgs=max_msgs,
        max_bytes=max_bytes,
        max_age=max_age_s,
        max_msg_size=max_msg_size,
        max_msgs_per_subject=max_msgs_per_subject,
        discard=DiscardPolicy(discard),
        duplicate_window=duplicate_window_s or 0,
        allow_direct=allow_direct,
    )


def operator_consumer(
    name: str,
    *,
    filter_subjects: list[str],
    deliver_policy: str,
    opt_start_seq: int | None,
    ack_policy: str,
    ack_wait_s: float | None,
    max_deliver: int | None,
    description: str | None,
    inactive_threshold_s: float | None,
) -> ConsumerConfig:
    """A durable pull consumer an operator creates through ``nats_consumer_create`` (no deliver subject)."""
    return ConsumerConfig(
        name=name,
        durable_name=name,
        description=description,
        deliver_policy=DeliverPolicy(deliver_policy),
        opt_start_seq=opt_start_seq,
        ack_policy=AckPolicy(ack_policy),
        ack_wait=ack_wait_s,
        max_deliver=max_deliver,
        filter_subjects=filter_subjects or None,
        inactive_threshold=inactive_threshold_s,
    )


# -- KV buckets --------------------------------------------------------------------------------------


def registry_bucket(layout: Layout) -> BucketSpec:
    return BucketSpec(layout.registry_bucket, "agent registry")


def identity_bucket(layout: Layout) -> BucketSpec:
    return BucketSpec(layout.identity_bucket, "agent leases, handles and locks")


def fleet_bucket(layout: Layout) -> BucketSpec:
    """The fleet coordinator's lease, its instances and recent decisions (fleet/state.py)."""
    return BucketSpec(layout.fleet_bucket, "fleet coordinator: leader lease, instances, decisions")


def directory_bucket() -> BucketSpec:
    return BucketSpec(DIRECTORY_BUCKET, "registry entries shared across namespaces")


def work_state_bucket(layout: Layout, *, ttl_s: float) -> BucketSpec:
    return BucketSpec(layout.work_state_bucket, "work item state", ttl_s)


def calls_bucket(layout: Layout, *, ttl_s: float) -> BucketSpec:
    """Deduplicated tool calls of MCP sessions (coord/replay.py): each record lives ``ttl_s`` after its last write."""
    return BucketSpec(layout.calls_bucket, "tool calls of MCP sessions, kept to answer a resend", ttl_s)


def reservations_bucket(layout: Layout) -> BucketSpec:
    """The reservation table of a namespace (coord/reservations/): no TTL, its fencing counter must never go back."""
    return BucketSpec(layout.reservations_bucket, "reservations of project resources and their fencing counter")
