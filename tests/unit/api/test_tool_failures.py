"""The one tool dispatch (api/tools/base.py run_rendered): every failure family becomes one contract error."""

from __future__ import annotations

from typing import Any

import pytest

from nats_mcp.api.tools.base import Args, Rendered, run_rendered
from nats_mcp.bus.errors import JetStreamError, NatsUnavailableError
from nats_mcp.coord.errors import InvalidArgument
from nats_mcp.core.names import InvalidNameError
from nats_mcp.security.guard import Refused


class NameArgs(Args):
    name: str


def raising(exc: BaseException) -> Any:
    async def run(_args: NameArgs) -> Rendered:
        raise exc

    return run


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (InvalidArgument("limit must be positive"), "invalid_argument", "limit must be positive"),
        (InvalidNameError("invalid channel 'A B'"), "invalid_name", "invalid channel 'A B'"),
        (NatsUnavailableError("NATS did not answer.", "retry"), "nats_unavailable", "NATS did not answer."),
        (Refused("forbidden", "role agent may not call this tool"), "forbidden", "role agent may not call this tool"),
    ],
)
async def test_each_error_family_answers_its_code_and_message(exc: Exception, code: str, message: str) -> None:
    outcome = await run_rendered("t", NameArgs, raising(exc), {"name": "x"})
    assert outcome.error == (code, message)
    assert outcome.text == f"Error: [{code}] {message}"


async def test_an_internal_failure_is_logged_and_its_text_not_shown(caplog: pytest.LogCaptureFixture) -> None:
    inside = JetStreamError("stream nmcp_team_work: raft group unavailable", description="raft group unavailable")
    outcome = await run_rendered("t", NameArgs, raising(inside), {"name": "x"})
    assert outcome.error is not None and outcome.error[0] == "internal"
    assert "raft" not in outcome.text and "nmcp_team_work" not in outcome.text
    assert any(r.exc_info is not None and r.exc_info[1] is inside for r in caplog.records)  # logged, with the cause


async def test_invalid_arguments_never_reach_the_handler() -> None:
    outcome = await run_rendered("t", NameArgs, raising(AssertionError("ran")), {"nome": "x"})
    assert outcome.error is not None and outcome.error[0] == "invalid_argument"
