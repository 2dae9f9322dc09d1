"""Each tool declares what it touches beside its definition; one whose arguments and needs disagree cannot be built."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field

from nats_mcp.api.schema import BucketName, CapabilityName, ChannelName, NameStr, StreamName, SubjectName
from nats_mcp.api.tools.base import Args, NoArgs, OpsSpec, Out, Rendered, ToolSpec, marked_args
from nats_mcp.api.tools.coordination import TOOLS, needs_of
from nats_mcp.api.tools.natsops import OPS_TOOLS
from nats_mcp.security.needs import (
    Admin,
    CapabilityRead,
    CapabilityUse,
    ChannelRead,
    ChannelSend,
    NatsAccess,
    Needs,
    ReservationsRead,
    Reserve,
    UndeclaredNeed,
    Waits,
)


async def _handler(*_: Any) -> Rendered:
    raise AssertionError("never called")


class _Out(Out):
    ok: bool


class PostArgs(Args):
    channel: ChannelName = Field(description="A channel.")
    message: str = Field(description="The message.")


class PlainArgs(Args):
    channel: NameStr = Field(description="Unmarked.")


class PurgeArgs(Args):
    stream: StreamName
    subjects: list[SubjectName] | None = None


class BucketArgs(Args):
    bucket: BucketName


def spec(args: type[Args], needs: Needs = (), suffix: str = "channels_post") -> ToolSpec:
    return ToolSpec(suffix, "Post", "Post.", args, _Out, _handler, needs=needs)


def test_a_tool_with_a_channel_argument_and_no_declaration_cannot_be_registered() -> None:
    with pytest.raises(UndeclaredNeed, match=r"tool channels_post: argument 'channel' names a channel"):
        spec(PostArgs)
    assert spec(PostArgs, (ChannelSend("channel"),)).needs == (ChannelSend("channel"),)


def test_an_ops_tool_must_cover_every_marked_argument_even_inside_optional_lists() -> None:
    def ops(needs: Needs) -> OpsSpec:
        return OpsSpec("nats_stream_prune", "Prune", "Prune.", PurgeArgs, _Out, _handler, needs=needs)

    with pytest.raises(UndeclaredNeed, match=r"tool nats_stream_prune: argument 'stream' names a stream"):
        ops(())
    with pytest.raises(UndeclaredNeed, match=r"argument 'subjects' names a subject"):
        ops((NatsAccess("write", streams="stream"),))
    assert ops((NatsAccess("write", streams="stream", subjects="subjects"),)).suffix == "nats_stream_prune"
    with pytest.raises(UndeclaredNeed, match=r"argument 'bucket' names a bucket"):
        OpsSpec("nats_kv_x", "X", "X.", BucketArgs, _Out, _handler, needs=(NatsAccess("read"),))


def test_a_declaration_must_name_an_argument_the_tool_has_marked_as_that_resource() -> None:
    with pytest.raises(UndeclaredNeed, match=r"names argument 'room', which the tool lacks"):
        spec(PostArgs, (ChannelSend("channel"), ChannelRead("room")))
    with pytest.raises(UndeclaredNeed, match=r"argument 'channel' as a channel, but the argument is not marked"):
        spec(PlainArgs, (ChannelSend("channel"),))
    with pytest.raises(UndeclaredNeed, match=r"argument 'message' as a capability"):
        spec(PostArgs, (ChannelSend("channel"), CapabilityUse("message", "claim")))
    with pytest.raises(UndeclaredNeed, match=r"names argument 'timeout', which the tool lacks"):
        spec(PostArgs, (ChannelSend("channel"), Waits()))
    assert spec(NoArgs, (Admin("dlq"),)).needs == (Admin("dlq"),)


def test_marks_are_found_wherever_the_argument_type_holds_them() -> None:
    class Mixed(Args):
        a: ChannelName
        b: CapabilityName | None = None
        c: list[SubjectName] = Field(default_factory=list)
        d: str = ""

    assert marked_args(Mixed) == {"a": "channel", "b": "capability", "c": "subject", "d": None}


OLD_TABLES: dict[str, Needs] = {
    # What security/policy.py's and guard.py's name tables said before the needs moved beside the tools.
    "channels_send": (ChannelSend("channel"),),
    "channels_read": (ChannelRead("channel"), Waits("waitMs", 0, pool="read_waits")),  # waitMs: issue 23
    "messages_read_direct": (Waits("waitMs", 0, pool="read_waits"),),
    "channels_status": (ChannelRead("channel"),),
    "work_broadcast": (CapabilityUse("requiredCapability", "broadcast", boundary="boundary"),),
    "work_claim": (CapabilityUse("capability", "claim"), Waits("timeout", 5000)),
    "work_claim_batch": (CapabilityUse("capability", "claim"), Waits("timeout", 5000)),
    "work_list": (CapabilityRead("capability"),),
    "work_queue_status": (CapabilityRead("capability"),),
    "work_get": (CapabilityRead("capability"), Waits("waitMs", 0, pool="read_waits")),
    "dlq_list": (CapabilityRead("capability"),),
    "dlq_retry": (Admin("dlq"),),
    "dlq_discard": (Admin("dlq"),),
    "work_force_cancel": (Admin("dlq"),),
    # Added with the reservations (not in the old tables): the reserved paths against the role's globs, the wait.
    "reservations_acquire": (Reserve("resources"), Waits("waitMs", 0)),
    "reservations_force_release": (Admin("reservations"),),
    "reservations_list": (ReservationsRead(),),
    "nats_server_info": (NatsAccess("server"),),
    "nats_stream_list": (NatsAccess("read"),),
    "nats_stream_info": (NatsAccess("read", streams="stream"),),
    "nats_stream_get_message": (NatsAccess("read", streams="stream", subjects="lastBySubject"),),
    "nats_consumer_list": (NatsAccess("read", streams="stream"),),
    "nats_consumer_info": (NatsAccess("read", streams="stream"),),
    "nats_kv_list": (NatsAccess("read"),),
    "nats_kv_get": (NatsAccess("read", buckets="bucket"),),
    "nats_kv_history": (NatsAccess("read", buckets="bucket"),),
    "nats_kv_keys": (NatsAccess("read", buckets="bucket"),),
    "nats_publish": (NatsAccess("write", subjects="subject"),),
    "nats_request": (NatsAccess("write", subjects="subject"),),
    "nats_stream_create": (NatsAccess("write", streams="name", subjects="subjects"),),
    "nats_stream_update": (NatsAccess("write", streams="name", subjects="subjects"),),
    "nats_stream_purge": (NatsAccess("write", streams="name"),),
    "nats_stream_delete": (NatsAccess("write", streams="name"),),
    "nats_consumer_create": (NatsAccess("write", streams="stream"),),
    "nats_consumer_delete": (NatsAccess("write", streams="stream"),),
    "nats_kv_put": (NatsAccess("write", buckets="bucket"),),
    "nats_kv_delete": (NatsAccess("write", buckets="bucket"),),
}


def test_every_tool_declares_what_the_name_tables_said_and_nothing_else() -> None:
    declared = {spec.suffix: spec.needs for spec in (*TOOLS, *OPS_TOOLS) if spec.needs}
    assert declared == OLD_TABLES
    assert NatsAccess("read", streams="stream", subjects="lastBySubject").checks == (
        ("stream", "streams"),
        ("lastBySubject", "subjects"),
    )
    assert needs_of("work_claim") == OLD_TABLES["work_claim"] and needs_of("no_such_tool") == ()
