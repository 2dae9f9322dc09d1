"""Channel pieces that need no NATS: window sizing, decoding stored messages, argument checks, stream config."""

from __future__ import annotations

import json

import pytest
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import StoredMsg, api_prefix
from nats_mcp.bus.layout import Layout
from nats_mcp.config.coordination import ChannelSettings
from nats_mcp.config.settings import Settings
from nats_mcp.coord import channels
from nats_mcp.coord.channels import ChannelService
from nats_mcp.coord.errors import InvalidArgument

GUID = "a" * 32


def stored(seq: int, body: object) -> StoredMsg:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return StoredMsg(seq=seq, subject="nmcp.ns.chan.c", data=data, time="")


def body(**extra: object) -> dict[str, object]:
    return {
        "id": "0d4c1b8e-8f5e-4a57-9a38-3c1a2b9d7e10",
        "handle": "alice",
        "senderGuid": GUID,
        "message": "hi",
        "timestamp": "2026-01-01T00:00:00.000Z",
        **extra,
    }


@pytest.mark.parametrize(
    ("need", "scanned", "hits", "span"),
    [
        (50, 0, 0, 50),  # first window: exactly what is needed
        (25, 50, 25, 50),  # half the sequences were gaps: twice as wide
        (10, 100, 100, 10),  # dense history
        (5, 1000, 1, 20),  # very sparse: capped at 4x
        (3, 40, 0, 3),  # nothing found in windows so far (jumps did the work)
    ],
)
def test_window_span(need: int, scanned: int, hits: int, span: int) -> None:
    assert channels._span(need, scanned, hits) == span


def test_decode_adds_the_stream_sequence() -> None:
    msg = channels._decode(stored(7, body(scope="team", sequence=999)))
    assert msg is not None and msg.sequence == 7 and msg.scope == "team"


def test_decode_ignores_unknown_fields_and_skips_foreign_data() -> None:
    assert channels._decode(stored(1, body(newField=1))) is not None  # written by a newer version
    deep = b"[" * 100_000 + b"]" * 100_000
    for bad in (b"not json", b"[1, 2]", b"null", b"\xff\xfe", deep, json.dumps({"message": "no sender"}).encode()):
        assert channels._decode(stored(1, bad)) is None
    assert channels._decode(stored(1, body(scope="everyone"))) is None
    got = channels._decode_all([stored(1, body()), stored(2, b"junk"), stored(3, body())])
    assert [m.sequence for m in got] == [1, 3]


@pytest.mark.parametrize("limit", [0, 1001, -5, True, 1.0, "50", None])
def test_limit_checks(limit: object) -> None:
    with pytest.raises(InvalidArgument):
        channels._check_limit(limit)


def test_limit_bounds_accepted() -> None:
    channels._check_limit(1)
    channels._check_limit(1000)


@pytest.mark.parametrize("after", [-1, False, "0", 1.5, 2**63])
def test_after_sequence_checks(after: object) -> None:
    with pytest.raises(InvalidArgument):
        channels._check_after(after)


def test_scope_checks() -> None:
    assert channels._scope(None) is None
    assert channels._scope("public") == "public"
    with pytest.raises(InvalidArgument):
        channels._scope("project-only")  # a legacy visibility, not a scope


def test_timestamp_is_utc_iso_with_milliseconds() -> None:
    stamp = channels._now()
    assert stamp.endswith("Z") and len(stamp) == len("2026-01-01T00:00:00.000Z")


def test_stream_config_from_settings() -> None:
    settings = Settings(channels=[ChannelSettings(name="ops", description="d", max_messages=5, max_age="30s")])
    svc = ChannelService(NatsConnection(settings), settings, Layout("ns1"))
    config = svc.stream_config(settings.channels[0])
    assert (config.name, config.subjects) == ("nmcp_ns1_chan_ops", ["nmcp.ns1.chan.ops"])
    assert (config.storage, config.retention, config.discard) == (
        StorageType.FILE,
        RetentionPolicy.LIMITS,
        DiscardPolicy.OLD,
    )
    assert (config.max_msgs, config.max_bytes, config.max_age) == (5, 10 * 1024 * 1024, 30)
    assert config.duplicate_window == 30  # never longer than max_age (the server refuses that)
    assert config.allow_direct is True
    assert [c.name for c in svc.list()] == ["ops"]


def test_api_prefix() -> None:
    assert api_prefix() == "$JS.API"
    assert api_prefix("hub") == "$JS.hub.API"
