"""Every tool, called by the real SDK client over stdio with generated arguments: valid for its schema and the domain
(configured channels, registered agents, items really claimed or dead-lettered: tests/fuzz/domain.py), which must
succeed; valid for the schema alone, which get a result or a contract error (never ``internal``); and with one thing
wrong, which must be refused with that thing's code. Nothing hangs, and the server still serves afterwards.
``NATS_MCP_FUZZ_EXAMPLES`` sets the examples per tool and test (CI: 12; the long form: 300)."""

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
from tests.fuzz.domain import CHANNELS, NEEDS, WORK_CAP, Given, domain_valid, one_thing_wrong
from tests.fuzz.schemas import valid
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
    "cancelled",
    "rate_limited",
}
"""What a tool may answer to arguments a fuzzer makes (``internal`` would be a crash; NATS is up throughout)."""
UNLIMITED = {
    f"NATS_MCP_SECURITY_RATE_PER_{who}_{what}": value
    for who in ("PRINCIPAL", "ADDRESS")
    for what, value in (("RATE_PER_S", "1000000"), ("BURST", "10000000"))
}
"""The fuzzer's calls come fast: a rate_limited answer would be the limiter's doing, not the tool's."""
TABLE = ToolTable("warp_")
SCHEMAS = {tool.name: tool.input_schema for tool in TABLE.tools}


class LiveAgent:
    """One `nats-mcp serve` over stdio and its SDK client, on a loop of its own thread (Hypothesis tests are sync)."""

    def __init__(self, base: Path, nats_url: str, **env: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-agent", daemon=True)
        self.thread.start()
        environment = isolated_env(base, NATS_URL=nats_url, NATS_MCP_NAMESPACE="team-fuzz", **UNLIMITED, **env)
        self.params = StdioServerParameters(command=nats_mcp_exe(), args=["serve"], env=environment, cwd=str(base))
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

    def ok(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """A set-up call that has to succeed; its structured result."""
        result = self.call(name, arguments)
        assert not result.is_error and isinstance(result.structured_content, dict), (name, arguments, result)
        return result.structured_content

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stopped.set)
        try:
            self.task.result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.errlog.close()


class Fuzzing:
    """The fuzzing agent, and a peer agent (registered once) to address."""

    def __init__(self, agent: LiveAgent, peer_guid: str) -> None:
        self.agent = agent
        self.peer_guid = peer_guid

    def prepare(self, tool: str) -> Given:
        """The set-up ``tool`` needs for one domain-valid call (NEEDS), made now; the live state it made."""
        given = Given(peer=self.peer_guid)
        # a fuzzed register or deregister may have changed the agent's registration: every example starts registered
        self.agent.ok("warp_registry_register", {"agentType": "fuzzer", "capabilities": [WORK_CAP]})
        need = NEEDS.get(tool)
        if need in ("offered", "claimed", "dead"):
            offer = {"taskId": "set-up", "description": "an item to act on", "requiredCapability": WORK_CAP}
            self.agent.ok("warp_work_broadcast", offer)
        if need in ("claimed", "dead"):
            claimed = self.agent.ok("warp_work_claim", {"capability": WORK_CAP, "timeout": 5000})["workItem"]
            assert isinstance(claimed, dict), "the item just offered was not handed out"
            given.item = claimed["id"]
        if need in ("unreserved", "reserved"):
            for held in self.agent.ok("warp_reservations_list", {"mine": True})["reservations"]:
                self.agent.ok("warp_reservations_release", {"reservationId": held["reservationId"]})
        if need == "reserved":
            made = self.agent.ok("warp_reservations_acquire", {"resources": ["set-up/**"]})
            assert made["granted"], made
            given.reservation = made["reservationId"]
        if need == "dead":
            failed = {"workItemId": given.item, "reason": "set-up", "recoverable": False}
            assert self.agent.ok("warp_work_fail", failed)["status"] == "dead_lettered"
            given.dead, given.item = given.item, ""
        return given


@pytest.fixture(scope="module")
def live(fuzzing: Fuzzing) -> LiveAgent:
    return fuzzing.agent


@pytest.fixture(scope="module")
def fuzzing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzing]:
    base = tmp_path_factory.mktemp("fuzz-tools")
    server = start_nats_server(base / "nats")
    agent = LiveAgent(base / "fuzzer", server.url)
    peer = LiveAgent(base / "peer", server.url)
    try:
        agent.ok("warp_handle_set", {"handle": "fuzzer"})
        agent.ok("warp_registry_register", {"agentType": "fuzzer", "capabilities": [WORK_CAP]})
        channels = agent.ok("warp_channels_list", {})["channels"]
        assert tuple(c["name"] for c in channels) == CHANNELS, channels  # what domain.py takes as configured
        peer_guid = peer.ok("warp_registry_register", {"agentType": "peer"})["agent"]["guid"]
        yield Fuzzing(agent, peer_guid)
    finally:
        peer.close()
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
    if isinstance(arguments.get("waitMs"), int):
        arguments["waitMs"] = min(arguments["waitMs"], 200)  # nor a waiting read, acquire or work_get
    check(live.call(name, arguments), name, arguments)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@FUZZ
@given(data=st.data())
def test_arguments_valid_for_the_schema_and_the_domain_succeed(fuzzing: Fuzzing, name: str, data: Any) -> None:
    given_state = fuzzing.prepare(name)
    arguments = data.draw(domain_valid(name, SCHEMAS[name], given_state), label="arguments")
    result = fuzzing.agent.call(name, arguments)
    code = check(result, name, arguments)
    assert code is None, f"{name} refused valid arguments with {code}: {arguments}\n{result.content[0]}"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@FUZZ
@given(data=st.data())
def test_one_thing_wrong_is_refused_with_its_code(fuzzing: Fuzzing, name: str, data: Any) -> None:
    given_state = fuzzing.prepare(name)
    arguments, expected = data.draw(one_thing_wrong(name, SCHEMAS[name], given_state), label="arguments")
    result = fuzzing.agent.call(name, arguments)
    code = check(result, name, arguments)
    assert code == expected, f"{name}: {code} for {arguments}, expected {expected}\n{result.content[0]}"


def test_the_server_still_serves_after_the_fuzzing(live: LiveAgent) -> None:
    assert live.run(alive(live)) is True


async def alive(live: LiveAgent) -> bool:
    assert live.client is not None
    assert len((await live.client.list_tools()).tools) == len(SCHEMAS)
    result = await live.client.call_tool("warp_handle_get", {})
    # the fuzzer set other handles on the way: any is fine, the call must simply work
    return not result.is_error and isinstance((result.structured_content or {}).get("handle"), str)
