"""The NATS operations config boundary: stream and consumer settings in (as nats-py configs), infos out (summaries)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nats_mcp.bus import specs
from nats_mcp.bus.jstypes import ConsumerConfig, ConsumerInfo, StreamConfig, StreamInfo
from nats_mcp.coord.errors import InvalidArgument
from nats_mcp.coord.natsops import guard as check
from nats_mcp.coord.natsops.models import BucketSummary, ConsumerSummary


def stream_config(
    name: str,
    subjects: list[str],
    *,
    description: str | None = None,
    storage: str = "file",
    retention: str = "limits",
    replicas: int = 1,
    max_msgs: int = -1,
    max_bytes: int = -1,
    max_age_s: float = 0,
    max_msg_size: int = -1,
    max_msgs_per_subject: int = -1,
    discard: str = "old",
    duplicate_window_s: float | None = None,
    allow_direct: bool = True,
) -> StreamConfig:
    """A StreamConfig from plain arguments (nothing else of a stream, e.g. sources or republish, is settable)."""
    return specs.operator_stream(
        name,
        subjects,
        description=description,
        storage=storage,
        retention=retention,
        replicas=replicas,
        max_msgs=max_msgs,
        max_bytes=max_bytes,
        max_age_s=max_age_s,
        max_msg_size=max_msg_size,
        max_msgs_per_subject=max_msgs_per_subject,
        discard=discard,
        duplicate_window_s=duplicate_window_s,
        allow_direct=allow_direct,
    )


def consumer_config(
    name: str,
    *,
    filter_subjects: list[str],
    deliver_policy: str = "all",
    opt_start_seq: int | None = None,
    ack_policy: str = "explicit",
    ack_wait_s: float | None = None,
    max_deliver: int | None = None,
    description: str | None = None,
    inactive_threshold_s: float | None = None,
) -> ConsumerConfig:
    """A durable pull consumer: no deliver subject, so it cannot push messages to a subject the policy did not allow."""
    if deliver_policy == "by_start_sequence" and not opt_start_seq:
        raise InvalidArgument("deliverPolicy by_start_sequence needs optStartSeq")
    if opt_start_seq and deliver_policy != "by_start_sequence":
        raise InvalidArgument("optStartSeq is only used with deliverPolicy by_start_sequence")
    return specs.operator_consumer(
        name,
        filter_subjects=filter_subjects,
        deliver_policy=deliver_policy,
        opt_start_seq=opt_start_seq,
        ack_policy=ack_policy,
        ack_wait_s=ack_wait_s,
        max_deliver=max_deliver,
        description=description,
        inactive_threshold_s=inactive_threshold_s,
    )


def iso(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def num(value: int | None) -> int:
    return -1 if value is None else value


def enum_text(value: Any, default: str = "") -> str:
    return str(getattr(value, "value", value) or default)


def config_dict(changes: dict[str, Any]) -> dict[str, Any]:
    """StreamConfig fields (nats-py names) -> the JSON API's, for merging into a current config."""
    out = dict(changes)
    for seconds in ("max_age", "duplicate_window"):  # the API counts nanoseconds
        if out.get(seconds) is not None:
            out[seconds] = int(out[seconds] * 1_000_000_000)
    return out


def consumer_summary(info: ConsumerInfo) -> ConsumerSummary:
    c = info.config
    filters = list(c.filter_subjects or ([c.filter_subject] if c.filter_subject else []))
    return ConsumerSummary(
        stream=info.stream_name,
        name=info.name,
        durable=bool(c.durable_name),
        description=c.description,
        filterSubjects=filters,
        deliverPolicy=enum_text(c.deliver_policy, "all"),
        ackPolicy=enum_text(c.ack_policy, "explicit"),
        numPending=info.num_pending or 0,
        numAckPending=info.num_ack_pending or 0,
        numRedelivered=info.num_redelivered or 0,
        numWaiting=info.num_waiting or 0,
        deliveredStreamSeq=info.delivered.stream_seq if info.delivered else 0,
        ackFloorStreamSeq=info.ack_floor.stream_seq if info.ack_floor else 0,
        created=iso(getattr(info, "created", None)),
    )


def bucket_summary(info: StreamInfo) -> BucketSummary:
    c, s = info.config, info.state
    name = str(c.name)[3:]
    return BucketSummary(
        bucket=name,
        values=s.messages,
        bytes=s.bytes,
        history=c.max_msgs_per_subject,
        ttlSeconds=float(c.max_age or 0),
        storage=enum_text(c.storage, "file"),
        replicas=c.num_replicas or 1,
        internal=check.internal_bucket(name),
    )
