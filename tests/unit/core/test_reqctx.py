"""The request context that log lines name: one value per task, entered and left around each call."""

from __future__ import annotations

import asyncio

from nats_mcp.core import reqctx


def test_enter_leave_and_nesting() -> None:
    assert reqctx.current() == {}
    outer = reqctx.enter("alice", "warp_send")
    first = reqctx.current()
    assert first["principal"] == "alice" and first["tool"] == "warp_send" and first["request_id"]
    inner = reqctx.enter("bob")
    second = reqctx.current()
    assert second["principal"] == "bob" and "tool" not in second
    assert second["request_id"] != first["request_id"]
    reqctx.leave(inner)
    assert reqctx.current() == first
    reqctx.leave(outer)
    assert reqctx.current() == {}


async def test_concurrent_tasks_see_their_own_request() -> None:
    async def serve(subject: str) -> str:
        scope = reqctx.enter(subject)
        await asyncio.sleep(0)  # a yield: the other task enters its own request before this one reads
        try:
            return reqctx.current()["principal"]
        finally:
            reqctx.leave(scope)

    assert await asyncio.gather(serve("a"), serve("b")) == ["a", "b"]
    assert reqctx.current() == {}
