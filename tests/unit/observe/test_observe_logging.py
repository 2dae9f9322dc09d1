"""Log lines: valid JSON on the given stream, secrets redacted, request id and principal of the call being served."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from nats_mcp.config.observe import LoggingSettings
from nats_mcp.config.security import SecuritySettings
from nats_mcp.observe.logging import setup_logging
from nats_mcp.security.guard import CallContext, Guard
from nats_mcp.security.policy import Policy, parse_policy
from nats_mcp.security.principal import Principal
from tests.support.guard import POLICY

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"
ALICE = Principal(subject="ci-alice", issuer="https://idp.example", method="jwt")


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    setup_logging(LoggingSettings(level="DEBUG", format="json"), out)
    try:
        yield out
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]  # every line is one JSON object


async def test_lines_carry_the_request_id_and_principal_of_the_call(stream: io.StringIO) -> None:
    log = logging.getLogger("nats_mcp.test")
    guard = Guard(SecuritySettings(), Policy(parse_policy(POLICY)))

    async def run() -> str:
        log.info("inside the call")
        return "ok"

    log.info("before any call")
    ctx = CallContext(ALICE, "http", "team-a")
    await guard.call(ctx, "channels_list", {}, run, lambda r: r, needs=())
    await guard.call(ctx, "channels_list", {}, run, lambda r: r, needs=())
    log.info("after the calls")
    before, first, second, after = [line for line in lines(stream) if line["logger"] == "nats_mcp.test"]
    assert "request_id" not in before and "principal" not in before and "request_id" not in after
    assert first["principal"] == "ci-alice" and first["tool"] == "channels_list" and first["msg"] == "inside the call"
    assert first["request_id"] != second["request_id"]
    assert first["level"] == "INFO" and first["logger"] == "nats_mcp.test" and str(first["ts"]).endswith("Z")


def test_a_token_in_a_message_an_extra_or_a_traceback_is_redacted(stream: io.StringIO) -> None:
    log = logging.getLogger("nats_mcp.test")
    log.warning("login with Bearer %s failed", TOKEN, extra={"authorization": TOKEN, "url": "nats://u:pw1234@h:4222"})
    try:
        raise ValueError(f"bad token {TOKEN}")
    except ValueError:
        log.exception("oops")
    text = stream.getvalue()
    assert TOKEN not in text and "pw1234" not in text
    warning, error = [line for line in lines(stream) if line["logger"] == "nats_mcp.test"]
    assert warning["authorization"] == "***" and "***" in str(warning["msg"])
    assert "ValueError" in str(error["exc"]) and TOKEN not in str(error["exc"])


def test_text_format_is_one_line_per_record_with_the_same_redaction() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging(LoggingSettings(format="text"), out)
        logging.getLogger("nats_mcp.test").info("token=%s", TOKEN)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert TOKEN not in out.getvalue() and out.getvalue().count("\n") == 1
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.getvalue())
