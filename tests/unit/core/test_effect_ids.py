"""Effect ids of deduplicated calls (core/reqctx.py) and the codec of stored results (api/resend.py): pure logic."""

from __future__ import annotations

import asyncio
import uuid

import mcp_types as types
import pytest

from nats_mcp.api.resend import ResultCodec, deduplicated
from nats_mcp.api.server import ToolTable, error_result, outcome_of
from nats_mcp.bus.layout import Layout
from nats_mcp.core import reqctx
from nats_mcp.core.names import InvalidNameError, validate_uuid


def draw(key: str, n: int) -> list[str]:
    with reqctx.effects(key):
        return [reqctx.new_uuid() for _ in range(n)]


def test_ids_inside_a_call_are_derived_from_its_key_in_order() -> None:
    first = draw("k1", 3)
    assert draw("k1", 3) == first  # a re-run draws the same ids
    assert len(set(first)) == 3 and all(validate_uuid(i) == i for i in first)
    assert not set(draw("k2", 3)) & set(first)  # another call's ids never collide
    outside = reqctx.new_uuid()
    assert outside not in first and uuid.UUID(outside).version == 4


async def test_concurrent_calls_keep_their_own_keys() -> None:
    async def one(key: str) -> list[str]:
        with reqctx.effects(key):
            await asyncio.sleep(0)
            a = reqctx.new_uuid()
            await asyncio.sleep(0)
            return [a, reqctx.new_uuid()]

    got = await asyncio.gather(one("a"), one("b"), one("a"))
    assert got[0] == got[2] == draw("a", 2) and got[1] == draw("b", 2)


def test_call_keys_take_only_digests() -> None:
    token = "ab" * 32
    assert Layout.call_key(token) == f"call.{token}"
    for bad in ("ab" * 31, "AB" * 32, "a.b" + "0" * 61, "*" * 64, ">"):
        with pytest.raises(InvalidNameError):
            Layout.call_key(bad)


def test_only_tools_with_repeatable_effects_are_deduplicated() -> None:
    table = ToolTable("warp_", ops=True)
    chosen = {name for name, spec in table.by_name.items() if deduplicated(spec)}
    assert {"warp_channels_send", "warp_work_broadcast", "warp_work_claim", "warp_messages_read_direct"} <= chosen
    assert not {"warp_channels_read", "warp_registry_register", "warp_handle_set", "nats_kv_get"} & chosen


def test_results_are_kept_except_retryable_failures() -> None:
    codec = ResultCodec(error_result, outcome_of)
    ok = types.CallToolResult(
        content=[types.TextContent(type="text", text="sent")], structured_content={"sequence": 3}, is_error=False
    )
    kept = codec.encode(ok)
    assert kept is not None and codec.decode(kept) == ok
    failed = error_result("conflict", "already completed")
    assert codec.encode(failed) is not None  # the first outcome, errors included, answers the resend
    assert codec.encode(error_result("nats_unavailable", "NATS is away")) is None  # nothing to answer: run again
    busy = codec.busy(0.2)
    assert outcome_of(busy) == "conflict" and (busy.meta or {})["io.nats-mcp/error"]["retryAfterS"] == 1.0
    assert outcome_of(codec.reused()) == "invalid_argument" and outcome_of(codec.unkept()) == "conflict"
