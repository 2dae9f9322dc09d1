"""Every tool, called by the real SDK client over stdio with arguments generated from its own input schema — valid
ones and broken ones: every answer is a result or a contract error (never ``internal``), nothing hangs, and the
server still serves afterwards. ``NATS_MCP_FUZZ_EXAMPLES`` sets the examples per tool (CI: a quick budget)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import mcp_types as types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, StdioServerParameters, stdio_client

from nats_mcp.api.server import ToolTable
from nats_mcp.api.tools.base import ERROR_META
from tests.fuzz.schemas import invalid, valid
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import start_nats_server

T = TypeVar("T")
EXAMPLES = int(os.environ.get("NATS_MCP_FUZZ_EXAMPLES", "12"))
CALL_TIMEOUT_S = 30.0
CONTRACT_CODES = {
    "invalid_argument",
    "invalid_name",
    "invalid_cursor",
    "not_registered",
    "not_found",
    "forbidden",
    "limit_exceeded",
    "conflict",
    "rate_limited",
}
"""What a tool may answer to arguments a fuzzer makes (``internal`` would be a crash; NATS is up throughout)."""
TABLE = ToolTable("warp_")
SCHEMAS = {tool.name: tool.input_schema for tool in TABLE.tools}


class LiveAgent:
    """One `nats-mcp serve` over stdio and its SDK client, on a loop of its own thread (Hypothesis tests are sync)."""

    def __init__(self, base: Path, nats_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-agent", daemon=True)
        self.thread.start()
        env = isolated_env(base, NATS_URL=nats_url, NATS_MCP_NAMESPACE="team-fuzz")
        self.params = StdioServerParameters(command=nats_mcp_exe(), args=["serve"], env=env, cwd=str(base))
        self.errlog = (base / "serve.log").open("a")
        self.stopped = asyncio.Event()
        self.client: Client | None = None
        ready: Future[None] = Future()
        self.task = asyncio.run_coroutine_threadsafe(self._hold(ready), self.loop)
        ready.result(60)

    async def _hold(self, ready: Future[None]) -> None:
        try:
            async with Client(stdio_client(self.params, errlog=self.errlog)) as client:  # type: ignore[arg-type]
                self.client = client
                ready.set_result(None)
                await self.stopped.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        assert self.client is not None
        return self.run(self.client.call_tool(name, arguments))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stopped.set)
        try:
            self.task.result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.errlog.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveAgent]:
    base = tmp_path_factory.mktemp("fuzz-tools")
    server = start_nats_server(base / "nats")
    agent = LiveAgent(base, server.url)
    try:
        setup = [
            ("warp_handle_set", {"handle": "fuzzer"}),
            ("warp_registry_register", {"agentType": "fuzzer", "capabilities": ["python"]}),
        ]
        for name, args in setup:
            assert not agent.call(name, args).is_error
        yield agent
    finally:
        agent.close()
        server.close()


def check(result: types.CallToolResult, name: str, arguments: dict[str, Any]) -> str | None:
    """The answer is well-formed: a result with structured content, or a contract error (its code in ``_meta``,
    no structured content); returns the error code."""
    assert result.content and result.content[0].type == "text", (name, arguments)
    if not result.is_error:
        assert isinstance(result.structured_content, dict), (name, arguments, result)
        return None
    error = (result.meta or {}).get(ERROR_META)
    assert result.structured_content is None, (name, arguments, result)
    assert isinstance(error, dict), (name, arguments, result)
    assert result.content[0].text.startswith(f"Error: [{error.get('code')}] "), (name, arguments, result)
    assert error.get("code") in CONTRACT_CODES, (name, arguments, result)
    return str(error["code"])


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@FUZZ
@given(data=st.data())
def test_arguments_from_the_schema_get_a_result_or_a_contract_error(live: LiveAgent, name: str, data: Any) -> None:
    arguments = data.draw(valid(SCHEMAS[name]), label="arguments")
    if name in ("warp_work_claim", "warp_work_claim_batch") and isinstance(arguments.get("timeout"), int):
        arguments["timeout"] = min(arguments["timeout"], 200)  # a waiting claim is not a hang
    check(live.call(name, arguments), name, arguments)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@FUZZ
@given(data=st.data())
def test_broken_arguments_are_refused_or_answered_never_a_crash(live: LiveAgent, name: str, data: Any) -> None:
    schema = SCHEMAS[name]
    arguments = data.draw(invalid(schema), label="arguments")
    code = check(live.call(name, arguments), name, arguments)
    unknown = set(arguments) - set(schema.get("properties", {}))
    missing = set(schema.get("required", ())) - set(arguments)
    if unknown or missing:  # what JSON Schema alone refuses is refused before any domain code runs
        assert code == "invalid_argument", (name, arguments, code)


def test_the_server_still_serves_after_the_fuzzing(live: LiveAgent) -> None:
    assert live.run(alive(live)) is True


async def alive(live: LiveAgent) -> bool:
    assert live.client is not None
    assert len((await live.client.list_tools()).tools) == len(SCHEMAS)
    result = await live.client.call_tool("warp_handle_get", {})
    # the fuzzer set other handles on the way: any is fine, the call must simply work
    return not result.is_error and isinstance((result.structured_content or {}).get("handle"), str)
