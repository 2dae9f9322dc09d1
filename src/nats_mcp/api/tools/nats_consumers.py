"""The ``nats_consumer_*`` tools: a stream's consumers listed, inspected, created (durable pull only), deleted."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nats_mcp.api.tools.base import OpsSpec, Out, Rendered
from nats_mcp.api.tools.nats_common import DESC, READ_HINTS, DeletedOut, PageArgs, PageOut, page_text
from nats_mcp.api.tools.nats_streams import StreamArgs
from nats_mcp.coord.natsops.models import ConsumerSummary
from nats_mcp.coord.natsops.service import NatsScope, OpsService, consumer_config
from nats_mcp.security.needs import NatsAccess

# ---- inputs -------------------------------------------------------------------------------------


class StreamPageArgs(StreamArgs, PageArgs):
    pass


class ConsumerArgs(StreamArgs):
    name: str = Field(description="Consumer name.", max_length=255)


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
    description: str | None = Field(default=None, max_length=1024, description=DESC)
    inactiveThresholdSeconds: float | None = Field(
        default=None, gt=0, description="Seconds without activity after which NATS deletes the consumer."
    )


# ---- outputs ------------------------------------------------------------------------------------


class ConsumerListOut(PageOut):
    consumers: list[ConsumerSummary]


class ConsumerOut(Out):
    consumer: ConsumerSummary


# ---- handlers -----------------------------------------------------------------------------------


async def consumer_list(ops: OpsService, _scope: NatsScope, args: StreamPageArgs) -> Rendered:
    consumers, page = await ops.consumer_list(args.stream, args.limit, args.cursor)
    rows = [f"- **{c.name}**: {c.numPending} pending, {c.numAckPending} unacked" for c in consumers]
    return ConsumerListOut(consumers=consumers, **page.model_dump()), page_text(rows, page.nextCursor, "No consumers.")


async def consumer_info(ops: OpsService, _scope: NatsScope, args: ConsumerArgs) -> Rendered:
    c = await ops.consumer_info(args.stream, args.name)
    text = (
        f"**{c.name}** on {c.stream}: filters {', '.join(c.filterSubjects) or 'none'}; {c.numPending} pending, "
        f"{c.numAckPending} unacked, {c.numRedelivered} redelivered; "
        f"delivered up to #{c.deliveredStreamSeq}"
    )
    return ConsumerOut(consumer=c), text


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


# ---- the table ----------------------------------------------------------------------------------


CONSUMER_READS: tuple[OpsSpec, ...] = (
    OpsSpec(
        "nats_consumer_list",
        "List consumers",
        "The consumers of a stream with their backlog (pending, unacked). Paged.",
        StreamPageArgs,
        ConsumerListOut,
        consumer_list,
        **READ_HINTS,
        needs=(NatsAccess("read", streams="stream"),),
    ),
    OpsSpec(
        "nats_consumer_info",
        "Consumer info",
        "One consumer's configuration and progress: pending, unacked and redelivered "
        "counts, delivered and ack-floor sequences. Use it to diagnose a stuck or lagging consumer.",
        ConsumerArgs,
        ConsumerOut,
        consumer_info,
        **READ_HINTS,
        needs=(NatsAccess("read", streams="stream"),),
    ),
)


CONSUMER_WRITES: tuple[OpsSpec, ...] = (
    OpsSpec(
        "nats_consumer_create",
        "Create consumer",
        "Create (or confirm) a durable pull consumer on a stream, optionally filtered "
        "by subjects. Push consumers are not offered.",
        ConsumerCreateArgs,
        ConsumerOut,
        consumer_create,
        idempotent=True,
        needs=(NatsAccess("write", streams="stream"),),
    ),
    OpsSpec(
        "nats_consumer_delete",
        "Delete consumer",
        "Delete a consumer (its delivery state is lost; the messages stay).",
        ConsumerArgs,
        DeletedOut,
        consumer_delete,
        destructive=True,
        needs=(NatsAccess("write", streams="stream"),),
    ),
)
