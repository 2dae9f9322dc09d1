"""Inbox input rules and stored-payload parsing, without NATS."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from nats_mcp.coord.checks import check_metadata, json_depth
from nats_mcp.coord.checks import timestamp as _timestamp
from nats_mcp.coord.dms import Filters as _Filters
from nats_mcp.coord.dms import check_content, check_limit, check_message_type, parse_stored
from nats_mcp.coord.errors import InvalidArgument, InvalidName, LimitExceeded
from nats_mcp.coord.models import DirectMessage

OWNER = "a" * 32
SENDER = "b" * 32


def stored(**overrides: Any) -> bytes:
    body = {
        "id": "6f1c2b7e-0d7e-4a53-9d0b-1f0f6a3c9e11",
        "senderGuid": SENDER,
        "senderHandle": "alice",
        "recipientGuid": OWNER,
        "messageType": "text",
        "content": "hi",
        "metadata": None,
        "timestamp": "2026-01-01T00:00:00.000Z",
    }
    body.update(overrides)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ("s", 0), ({}, 1), ([], 1), ({"a": 1}, 1), ({"a": {"b": []}}, 3), ({"a": [1, [2, [3]]]}, 4)],
)
def test_json_depth(value: object, depth: int) -> None:
    assert json_depth(value, 64) == depth


def test_json_depth_stops_early_on_hostile_nesting() -> None:
    value: list[Any] = []
    for _ in range(100_000):  # far past the recursion limit
        value = [value]
    assert json_depth(value, 16) == 17


def test_content_limit_counts_utf8_bytes() -> None:
    assert check_content("é" * 5, 10) == "é" * 5
    with pytest.raises(LimitExceeded):
        check_content("é" * 6, 10)
    with pytest.raises(InvalidArgument):
        check_content("", 10)
    with pytest.raises(InvalidArgument):
        check_content("\ud800", 10)  # lone surrogate, as a JSON escape can deliver it


def test_metadata_rules() -> None:
    assert check_metadata(None, 100, 2) is None
    assert check_metadata({"a": {"b": 1}}, 100, 2) == {"a": {"b": 1}}
    with pytest.raises(LimitExceeded):
        check_metadata({"a": {"b": {}}}, 100, 2)
    with pytest.raises(LimitExceeded):
        check_metadata({"a": "x" * 100}, 100, 2)
    with pytest.raises(InvalidArgument):
        check_metadata("text", 100, 2)
    with pytest.raises(InvalidArgument):
        check_metadata({"a": object()}, 100, 2)
    with pytest.raises(InvalidArgument):
        check_metadata({"a": "\udfff"}, 100, 2)


@pytest.mark.parametrize("limit", [0, 101, -1, True, 1.5, "10"])
def test_limit_out_of_range(limit: Any) -> None:
    with pytest.raises(InvalidArgument):
        check_limit(limit)


@pytest.mark.parametrize("bad", ["", "Text", "a.b", "a b", "*", ">", "x" * 64, None])
def test_message_type_is_a_type_name(bad: Any) -> None:
    with pytest.raises(InvalidName):
        check_message_type(bad)
    assert check_message_type("work_offer-2") == "work_offer-2"


def test_parse_stored_accepts_ours_and_ignores_unknown_fields() -> None:
    message = parse_stored(stored(extra="from a newer version"), OWNER)
    assert isinstance(message, DirectMessage) and message.content == "hi" and message.senderHandle == "alice"


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[1]", b"\xff\xfe", stored(recipientGuid=SENDER), stored(content=5), stored(id=None)],
)
def test_parse_stored_refuses_what_is_not_a_dm_to_the_owner(data: bytes) -> None:
    assert parse_stored(data, OWNER) is None


def test_filters_match_and_bind_the_owner() -> None:
    message = parse_stored(stored(messageType="offer"), OWNER)
    assert message is not None
    assert _Filters().matches(message) and not _Filters().active
    assert _Filters.of("offer", SENDER).matches(message)
    assert not _Filters.of("text", None).matches(message)
    assert not _Filters.of(None, OWNER).matches(message)
    assert _Filters().binding(OWNER) != _Filters().binding(SENDER)
    with pytest.raises(InvalidName):
        _Filters.of(None, "not-a-guid")


def test_timestamp_format() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", _timestamp())
