"""The faster header parser returns exactly what nats-py's own does, on generated and hand-picked inputs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from nats_mcp.bus.connection import _GuardedClient

CASES = [
    b"Nats-Sequence: 5\r\nNats-Subject: a.b\r\n\r\n",
    b"Name:Value\r\nName:\tTabbed\r\n",
    b"Bad Name: x\r\nGood: y\r\n",
    b": empty name\r\nno colon line\r\n",
    b"Caf\xc3\xa9: v\r\nK: caf\xc3\xa9\r\nK2: \xff\xfe\r\n",
    b"\x1cSep: v\r\nA\x0bB: v\r\n",
    b"",
]


def test_hand_picked_inputs() -> None:
    for raw in CASES:
        assert _GuardedClient._parse_header_lines(raw) == Client._parse_header_lines(raw)


@settings(max_examples=500)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_generated_inputs(lines: list[bytes]) -> None:
    raw = b"\r\n".join(lines)
    assert _GuardedClient._parse_header_lines(raw) == Client._parse_header_lines(raw)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=20)), max_size=6))
def test_generated_header_blocks(pairs: list[tuple[str, str]]) -> None:
    raw = b"".join(f"{k}: {v}\r\n".encode("utf-8", "surrogatepass") for k, v in pairs)
    assert _GuardedClient._parse_header_lines(raw) == Client._parse_header_lines(raw)
