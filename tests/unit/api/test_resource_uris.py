"""Resource URIs, the error mapping and the notification throttle, without NATS or a client."""

from __future__ import annotations

import asyncio
import itertools

import mcp_types as types
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nats_mcp.api.resource_feeds import Throttle
from nats_mcp.api.resource_uris import (
    CHANNEL_TEMPLATE,
    INBOX_URI,
    MAX_URI_LENGTH,
    ChannelResource,
    InboxResource,
    ResourceUriError,
    channel_uri,
    mcp_error,
    parse_uri,
)
from nats_mcp.coord.errors import InvalidArgument, NatsUnavailable, NotFound
from nats_mcp.core.names import InvalidNameError
from tests.support.virtual_clock import run_virtual


@pytest.mark.parametrize(
    ("uri", "ref"),
    [
        ("nats-mcp://channels/roadmap", ChannelResource("roadmap")),
        ("nats-mcp://channels/parallel-work", ChannelResource("parallel-work")),
        ("nats-mcp://channels/0", ChannelResource("0")),
        ("nats-mcp://channels/" + "a" * 63, ChannelResource("a" * 63)),
        ("nats-mcp://inbox", InboxResource()),
    ],
)
def test_good_uris(uri: str, ref: ChannelResource | InboxResource) -> None:
    assert parse_uri(uri) == ref
    assert ref.uri == uri


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "nats-mcp://",
        "nats-mcp:/inbox",
        "nats-mcp://inbox/",
        "nats-mcp://inbox?peek=1",
        "nats-mcp://INBOX",
        "NATS-MCP://inbox",
        "nats-mcp://channels",
        "nats-mcp://channels/",
        "nats-mcp://channels/road.map",
        "nats-mcp://channels/road.>",
        "nats-mcp://channels/*",
        "nats-mcp://channels/Roadmap",
        "nats-mcp://channels/road map",
        "nats-mcp://channels/roadmap/",
        "nats-mcp://channels/roadmap/x",
        "nats-mcp://channels/roadmap?limit=5",
        "nats-mcp://channels/roadmap#top",
        "nats-mcp://channels/%72oadmap",
        "nats-mcp://channels/-roadmap",
        "nats-mcp://channels/" + "a" * 64,
        "nats-mcp://channels/road\nmap",
        "nats-mcp://channel/roadmap",
        "https://channels/roadmap",
        "file:///etc/passwd",
        "nats-mcp://" + "x" * (MAX_URI_LENGTH + 1),
    ],
)
def test_bad_uris(uri: str) -> None:
    with pytest.raises(ResourceUriError):
        parse_uri(uri)


@pytest.mark.parametrize("value", [None, 5, b"nats-mcp://inbox", ["nats-mcp://inbox"]])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(ResourceUriError):
        parse_uri(value)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), st.text(max_size=70).map(lambda t: "nats-mcp://channels/" + t)))
def test_any_text_parses_to_itself_or_is_refused(text: str) -> None:
    try:
        ref = parse_uri(text)
    except ResourceUriError:
        return
    assert ref.uri == text


def test_channel_uri_validates_and_matches_the_template() -> None:
    assert channel_uri("errors") == CHANNEL_TEMPLATE.format(channel="errors")
    assert INBOX_URI == "nats-mcp://inbox"
    with pytest.raises(InvalidNameError):
        channel_uri("no.dots")


def test_error_mapping() -> None:
    bad = mcp_error(ResourceUriError("unknown resource URI"))
    assert bad.code == types.INVALID_PARAMS and bad.data == {"code": "invalid_name"}
    missing = mcp_error(NotFound("channel 'x' is not configured"))
    assert missing.code == types.INVALID_PARAMS and missing.data == {"code": "not_found"}
    assert mcp_error(InvalidArgument("limit")).code == types.INVALID_PARAMS
    down = mcp_error(NatsUnavailable("NATS is unavailable (nats://u:secret@h:4222)"))
    assert down.code == types.INTERNAL_ERROR and down.data == {"code": "nats_unavailable"}
    assert "secret" not in down.message
    crash = mcp_error(RuntimeError("internal detail"))
    assert crash.code == types.INTERNAL_ERROR and "internal detail" not in crash.message


# The throttle's timing is its logic: it runs on a virtual clock (tests/support/virtual_clock.py), where sleeps
# and loop.time() are exact, so the times below are asserted exactly and no real time passes.


def test_throttle_sends_the_first_at_once_and_coalesces_a_burst() -> None:
    async def scenario() -> tuple[list[float], int]:
        loop = asyncio.get_running_loop()
        sent: list[float] = []

        async def send() -> None:
            sent.append(loop.time())

        throttle = Throttle(0.1, send)
        for _ in range(40):  # a burst: 40 pokes 2 ms apart, t = 0 .. 0.078
            throttle.poke()
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.25)  # t = 0.33: quiet for longer than an interval
        throttle.poke()  # after a quiet interval: at once again (t = 0.33)
        await asyncio.sleep(0.02)
        throttle.poke()  # within the interval: held until t = 0.43 ...
        await asyncio.sleep(0.05)
        throttle.poke()  # ... and this one rides on the same send
        await asyncio.sleep(0.2)
        await throttle.close()
        return sent, throttle.sent

    sent, counted = run_virtual(scenario)
    # the first at once, the burst's rest once at the interval's end, then at once after quiet, then one per interval
    assert sent == pytest.approx([0.0, 0.1, 0.33, 0.43])
    assert counted == 4
    assert all(later - earlier >= 0.1 - 1e-9 for earlier, later in itertools.pairwise(sent))


def test_throttle_survives_a_failing_send_and_closes() -> None:
    async def scenario() -> tuple[list[float], int]:
        loop = asyncio.get_running_loop()
        calls: list[float] = []

        async def send() -> None:
            calls.append(loop.time())
            raise ConnectionError("client gone")

        throttle = Throttle(0.01, send)
        throttle.poke()
        await asyncio.sleep(0.02)
        throttle.poke()  # the failed send did not stop the throttle
        await asyncio.sleep(0.03)
        seen = len(calls)
        throttle.poke()
        await throttle.close()  # closed before the pending send ran: it never does
        await asyncio.sleep(0.1)
        return calls, seen

    calls, seen = run_virtual(scenario)
    assert seen == 2 and calls == pytest.approx([0.0, 0.02])
