"""Unit tests of the read scope set around each tool call (coord/capscope.py's Scope): set for the block, restored
after it (also when it raises), and a limit left unset means every capability, channel and reservation."""

from __future__ import annotations

import asyncio

import pytest

from nats_mcp.coord import capscope


def only(name: str) -> capscope.Readable:
    return lambda value: value == name


def test_scope_sets_every_limit_for_the_block_and_restores_them() -> None:
    bounds: capscope.BoundaryReader = lambda cap, boundary, take: boundary == "team"  # noqa: E731
    assert capscope.visible("x") and capscope.channel_visible("x") and capscope.reservation_visible("x")
    with capscope.Scope(only("a"), bounds, only("c"), only("r")):
        assert capscope.visible("a") and not capscope.visible("x")
        assert capscope.channel_visible("c") and not capscope.channel_visible("x")
        assert capscope.reservation_visible("r") and not capscope.reservation_visible("x")
        assert capscope.boundary_visible("a", "team") and not capscope.boundary_visible("a", "corporate")
        with capscope.Scope(None, None, None, None):  # a call that reads none of them sees everything again
            assert capscope.visible("x") and capscope.channel_visible("x") and capscope.reservation_visible("x")
            assert capscope.boundary_visible("a", "corporate")
        assert not capscope.visible("x")  # the inner block's limits are gone
    assert capscope.visible("x") and capscope.channel_visible("x") and capscope.boundary_visible("a", "corporate")


def test_scope_is_restored_when_the_call_raises_and_is_per_task() -> None:
    with pytest.raises(RuntimeError), capscope.Scope(only("a"), None, None, None):
        raise RuntimeError("the tool failed")
    assert capscope.visible("x")

    async def both() -> list[bool]:
        async def one(name: str) -> bool:
            with capscope.Scope(only(name), None, None, None):
                await asyncio.sleep(0)  # the other task runs inside its own scope meanwhile
                return capscope.visible(name) and not capscope.visible("b" if name == "a" else "a")

        return list(await asyncio.gather(one("a"), one("b")))

    assert asyncio.run(both()) == [True, True]
