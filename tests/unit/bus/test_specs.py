"""The declared NATS resources (bus/specs.py) are exactly the configs the domain built inline before they moved."""

from __future__ import annotations

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from nats_mcp.bus import specs
from nats_mcp.bus.layout import Layout

LAY = Layout("team")


def test_channel_stream() -> None:
    got = specs.channel_stream(
        LAY, "general", description="talk", max_messages=1000, max_bytes=1 << 20, max_age_s=3600.0
    )
    assert got == StreamConfig(
        name="nmcp_team_chan_general",
        description="talk",
        subjects=["nmcp.team.chan.general"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_msgs=1000,
        max_bytes=1 << 20,
        max_age=3600.0,
        duplicate_window=120.0,
        allow_direct=True,
    )
    short = specs.channel_stream(LAY, "general", description="", max_messages=1, max_bytes=1, max_age_s=60.0)
    assert short.duplicate_window == 60.0  # never longer than max_age


def test_inbox_stream() -> None:
    got = specs.inbox_stream(LAY, max_messages=500, max_age_s=86400.0)
    assert got == StreamConfig(
        name="nmcp_team_inbox",
        description="direct messages of namespace team, one subject per recipient",
        subjects=["nmcp.team.inbox.*"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        max_msgs_per_subject=500,
        discard=DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_age=86400.0,
        duplicate_window=120.0,
        allow_direct=True,
    )
    assert specs.inbox_stream(LAY, max_messages=1, max_age_s=30.0).duplicate_window == 30.0


def test_work_stream() -> None:
    want = StreamConfig(
        name="nmcp_team_work",
        description="work queues of namespace team: one subject per capability, priority and boundary",
        subjects=["nmcp.team.work.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.WORK_QUEUE,
        duplicate_window=120.0,
        allow_direct=True,
        max_bytes=4096,
        discard=DiscardPolicy.NEW,
    )
    assert specs.work_stream(LAY, max_bytes=4096) == want
    assert specs.work_stream(LAY, max_bytes=0).max_bytes == -1


def test_work_events_stream() -> None:
    assert specs.work_events_stream(LAY) == StreamConfig(
        name="nmcp_team_workev",
        description="max-delivery advisories and deadline timers of namespace team's work",
        subjects=["$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.nmcp_team_work.*", "nmcp.team.workev.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.WORK_QUEUE,
        allow_msg_schedules=True,
        duplicate_window=120.0,
        allow_rollup_hdrs=True,
    )


def test_dlq_stream() -> None:
    assert specs.dlq_stream(LAY, ttl_s=604800.0) == StreamConfig(
        name="nmcp_team_dlq",
        description="dead-lettered work items of namespace team",
        subjects=["nmcp.team.dlq.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        max_age=604800.0,
        max_msgs_per_subject=1,
        duplicate_window=120.0,
        allow_direct=True,
    )
    assert specs.dlq_stream(LAY, ttl_s=10.0).duplicate_window == 10.0


def test_consumers() -> None:
    assert specs.mover_consumer(LAY) == ConsumerConfig(
        durable_name="mover",
        filter_subjects=["$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.nmcp_team_work.*", "nmcp.team.workev.due.*"],
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=30.0,
        max_ack_pending=-1,
    )
    assert specs.work_consumer(LAY, "review", 3, ack_wait_s=45.0, max_deliver=4) == ConsumerConfig(
        durable_name="w_review_3",
        filter_subject="nmcp.team.work.review.3",
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=45.0,
        max_deliver=4,
        max_ack_pending=-1,
    )


def test_buckets() -> None:
    assert specs.registry_bucket(LAY) == specs.BucketSpec("nmcp_team_registry", "agent registry", None)
    assert specs.identity_bucket(LAY) == specs.BucketSpec("nmcp_team_identity", "agent leases, handles and locks")
    assert specs.directory_bucket() == specs.BucketSpec("nmcp_directory", "registry entries shared across namespaces")
    assert specs.work_state_bucket(LAY, ttl_s=9.0) == specs.BucketSpec("nmcp_team_workstate", "work item state", 9.0)
    resv = specs.reservations_bucket(LAY)
    assert (resv.name, resv.ttl_s) == ("nmcp_team_resv", None)  # no TTL: the fencing counter must never go back
    assert specs.fleet_bucket(LAY).name == "nmcp_team_fleet"
