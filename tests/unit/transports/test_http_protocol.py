"""Boundary of the HTTP session bound's accounting: what counts as a principal's open session, and when it stops."""

from __future__ import annotations

from typing import Any

from nats_mcp.config.security import RateSettings
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.principal import Principal
from nats_mcp.transports.http.protocol import SessionCap

ANN = Principal(subject="ann", issuer="keys", method="apikey", peer="10.0.0.1")
BEN = Principal(subject="ben", issuer="keys", method="apikey", peer="10.0.0.2")


class Audit:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def record(self, event: AuditEvent) -> None:
        self.records.append((event.kind, event.fields()))


def cap(live: set[str], now: list[float], limit: int = 2, rate: float = 1.0, burst: int = 10) -> SessionCap:
    """A bound whose count of a principal's open sessions is the ones it opened that are still live."""

    async def counter(_owner: str, held: set[str]) -> int:
        return sum(1 for session in held if session in live)

    return SessionCap(limit, RateSettings(rate_per_s=rate, burst=burst), counter, Audit(), clock=lambda: now[0])


async def test_sessions_the_sdk_no_longer_holds_stop_counting() -> None:
    live: set[str] = set()
    bound = cap(live, [0.0])
    for session in ("s1", "s2"):
        assert await bound.admit(ANN, "o") is None
        live.add(session)
        bound.opened(ANN.key, session)
    refused = await bound.admit(ANN, "o")
    assert refused is not None and refused[:2] == ("limit_exceeded", "too_many_sessions")
    assert await bound.admit(BEN, "o") is None  # another principal is not affected
    bound.opened(BEN.key, None)  # its handshake failed: nothing opened, nothing held
    assert await bound.count(BEN.key, "o") == 0
    live.discard("s1")  # ended by its idle timeout, a crash or a DELETE: the SDK no longer holds it
    assert await bound.count(ANN.key, "o") == 1
    assert await bound.admit(ANN, "o") is None


async def test_handshakes_in_flight_count_until_they_end() -> None:
    bound = cap(set(), [0.0])
    # two at once, neither answered yet
    assert await bound.admit(ANN, "o") is None and await bound.admit(ANN, "o") is None
    assert await bound.admit(ANN, "o") is not None
    bound.opened(ANN.key, None)
    assert await bound.count(ANN.key, "o") == 1


async def test_the_rate_refuses_with_the_time_to_wait_and_refills() -> None:
    now = [100.0]
    bound = cap(set(), now, limit=100, rate=0.5, burst=2)
    for _ in range(2):
        assert await bound.admit(ANN, "o") is None
        bound.opened(ANN.key, None)
    refused = await bound.admit(ANN, "o")
    assert refused is not None and refused[:2] == ("rate_limited", "initialize_rate_limited")
    assert refused[3] == 2.0  # one token at 0.5 a second
    now[0] += 2.0
    assert await bound.admit(ANN, "o") is None
