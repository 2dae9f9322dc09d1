"""The failover rules of bus/failover.py: which JetStream requests and publishes are resent, how resending and
riding out a leaderless stream end, and that nothing else is retried."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from nats.js.kv import KeyValue

from nats_mcp.bus import failover
from nats_mcp.bus.errors import NatsTimeout, NoStreamResponse, WrongLastSequence
from nats_mcp.bus.publish import store


@pytest.mark.parametrize(
    "subject",
    [
        "$JS.API.INFO",
        "$JS.API.STREAM.INFO.nmcp_work",
        "$JS.API.STREAM.MSG.GET.KV_reg",
        "$JS.API.STREAM.NAMES",
        "$JS.API.CONSUMER.INFO.nmcp_work.w_python_5",
        "$JS.API.DIRECT.GET.KV_reg.$KV.reg.abc",
        "$JS.hub.API.STREAM.INFO.nmcp_work",
        "$JS.API.CONSUMER.CREATE.nmcp_work.w_python_5",
        "$JS.API.CONSUMER.CREATE.nmcp_inbox.inbox_abc.nmcp.team.inbox.abc",
        "$JS.API.CONSUMER.DURABLE.CREATE.nmcp_work.w_python_5",
    ],
)
def test_reads_and_named_creates_are_resent(subject: str) -> None:
    assert failover.is_js_read(subject)


@pytest.mark.parametrize(
    "subject",
    [
        "$JS.API.STREAM.CREATE.nmcp_work",
        "$JS.API.STREAM.UPDATE.nmcp_work",
        "$JS.API.STREAM.MSG.DELETE.nmcp_work",
        "$JS.API.CONSUMER.CREATE.KV_reg",
        "$JS.API.CONSUMER.MSG.NEXT.nmcp_work.w_python_5",
        "$JS.ACK.nmcp_work.w_python_5.1.2.3.4.0",
        "$KV.reg.abc",
        "nmcp.team.work.python.5",
        "_INBOX.abc",
    ],
)
def test_writes_unnamed_creates_pulls_and_acks_are_not(subject: str) -> None:
    assert not failover.is_js_read(subject)


class Unanswered:
    """A request the server leaves unanswered ``misses`` times (each attempt waits out its timeout), then answers."""

    def __init__(self, misses: int) -> None:
        self.misses = misses
        self.timeouts: list[float] = []

    async def __call__(self, attempt_timeout: float) -> str:
        self.timeouts.append(attempt_timeout)
        if len(self.timeouts) <= self.misses:
            await asyncio.sleep(attempt_timeout)
            raise TimeoutError
        return "answer"


async def test_an_unanswered_read_is_resent_until_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failover, "RESEND_AFTER_S", 0.01)
    send = Unanswered(misses=2)
    assert await failover.resending("$JS.API.STREAM.INFO.s", 1.0, send) == "answer"
    assert send.timeouts == [0.01, 0.01, 0.01]


async def test_resending_ends_with_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failover, "RESEND_AFTER_S", 0.01)
    send = Unanswered(misses=1_000)
    with pytest.raises(TimeoutError):
        await failover.resending("$JS.API.STREAM.INFO.s", 0.05, send)
    assert len(send.timeouts) >= 2  # sent again, never past the caller's timeout, never longer than the interval
    assert sum(send.timeouts) <= 0.05 + 1e-9
    assert max(send.timeouts) <= 0.01


async def test_anything_but_a_read_is_sent_once_with_the_whole_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failover, "RESEND_AFTER_S", 0.01)
    send = Unanswered(misses=1)
    with pytest.raises(TimeoutError):
        await failover.resending("$JS.API.STREAM.CREATE.s", 0.03, send)
    assert send.timeouts == [0.03]


async def test_other_failures_are_not_resent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failover, "RESEND_AFTER_S", 0.01)
    calls = 0

    async def refused(_timeout: float) -> str:
        nonlocal calls
        calls += 1
        raise NoStreamResponse("no responders")

    with pytest.raises(NoStreamResponse):
        await failover.resend_until(1.0, refused)
    assert calls == 1


async def test_a_write_nobody_received_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failover, "RIDE_OUT_PAUSE_S", 0.001)
    attempts = 0

    async def write() -> int:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise NoStreamResponse("no responders")
        return 7

    assert await failover.riding_out(write) == 7
    assert attempts == 3


async def test_riding_out_gives_up_after_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failover, "RIDE_OUT_PAUSE_S", 0.01)
    attempts = 0

    async def write() -> int:
        nonlocal attempts
        attempts += 1
        raise NoStreamResponse("no responders")

    with pytest.raises(NoStreamResponse):
        await failover.riding_out(write, budget_s=0.05)
    assert 2 <= attempts <= 6


async def test_a_refused_write_is_not_tried_again() -> None:
    attempts = 0

    async def write() -> int:
        nonlocal attempts
        attempts += 1
        raise WrongLastSequence("moved on", err_code=10071)

    with pytest.raises(WrongLastSequence):
        await failover.riding_out(write)
    assert attempts == 1


class SlowStream:
    """A JetStream context whose stream answers a publish only from the ``answer_from``-th attempt on."""

    def __init__(self, answer_from: int) -> None:
        self.answer_from = answer_from
        self.sent: list[tuple[float, dict[str, str] | None]] = []

    async def publish(self, subject: str, payload: bytes, *, timeout: float, stream: str, headers: Any) -> Any:
        self.sent.append((timeout, headers))
        if len(self.sent) < self.answer_from:
            await asyncio.sleep(timeout)
            raise nats.errors.TimeoutError
        return SimpleNamespace(seq=42)


async def test_a_publish_with_a_dedupe_id_is_resent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failover, "RESEND_AFTER_S", 0.01)
    js = SlowStream(answer_from=3)
    assert await store(js, "s.x", b"p", stream="S", msg_id="m-1", timeout=1.0) == 42  # type: ignore[arg-type]
    assert [headers for _, headers in js.sent] == [{"Nats-Msg-Id": "m-1"}] * 3
    assert all(timeout == 0.01 for timeout, _ in js.sent)


async def test_a_publish_without_a_dedupe_id_is_sent_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failover, "RESEND_AFTER_S", 0.01)
    js = SlowStream(answer_from=2)
    with pytest.raises(NatsTimeout):
        await store(js, "s.x", b"p", stream="S", timeout=0.05)  # type: ignore[arg-type]
    assert [timeout for timeout, _ in js.sent] == [0.05]


class Replicas:
    """A JetStream context whose bucket leader fails a get with ``leader_error``; followers answer direct gets."""

    def __init__(self, leader_error: Exception) -> None:
        self.leader_error = leader_error
        self.asked: list[bool] = []

    async def get_msg(
        self, stream: str, seq: int | None = None, subject: str | None = None, direct: bool = False
    ) -> Any:
        self.asked.append(direct)
        if not direct:
            raise self.leader_error
        return SimpleNamespace(subject=subject, data=b"v", seq=7, headers=None)


def leader_first(js: Replicas) -> failover.LeaderFirstKeyValue:
    return failover.LeaderFirstKeyValue(KeyValue(name="b", stream="KV_b", pre="$KV.b.", js=js, direct=True))  # type: ignore[arg-type]


async def test_a_bucket_without_a_leader_is_read_from_a_follower() -> None:
    js = Replicas(
        nats.js.errors.ServiceUnavailableError()
    )  # the meta leader: "JetStream system temporarily unavailable"
    entry = await leader_first(js).get("k")
    assert (entry.value, entry.revision) == (b"v", 7)
    assert js.asked == [False, True]  # the leader first


async def test_a_missing_key_is_not_looked_up_on_a_follower() -> None:
    js = Replicas(nats.js.errors.NotFoundError())
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await leader_first(js).get("k")
    assert js.asked == [False]
