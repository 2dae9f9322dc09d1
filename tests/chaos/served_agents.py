"""The served-agent boundary of the server-kill chaos test: `nats-mcp serve` HTTP processes that are SIGKILLed and
replaced, and agents (the real SDK client, an API key, an agent name) that reconnect and send again a call a kill cut
off, as a real agent would.

* :class:`Gateway` keeps one serve process answering on an OS-assigned port, and standby processes already started
  (fresh ``nats-mcp serve`` processes that connected and ensured their resources, as a process manager with
  pre-started replacements would have): :meth:`Gateway.kill` SIGKILLs the serving process itself (the console
  script's interpreter, no shell in between), :meth:`Gateway.replace` hands the agents the next standby.
* :class:`Session` hosts one MCP session in a task of its own: when its server dies the SDK tears the session down
  from inside (its task group cancels the task that entered it), so an agent's own task never is.
* :class:`Agent` makes tool calls through the current session and answers each with an :class:`Answer`: the tool's
  result (``data``, or a tool ``error`` code), or ``cut`` when the serving process died before the answer came.
  A call that fails while its server is alive fails the test.
* :class:`Flight` counts the calls of each kind under way, so a kill can be aimed at one kind and the counts at the
  moment of each kill recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp import Client

from nats_mcp.api.tools.base import ERROR_META
from tests.chaos.traffic import TRANSIENT
from tests.support.http_server import HttpServer, launch, mcp_client

CALL_TIMEOUT_S = 30.0
"""A call that gets no answer this long from a live server fails the test (no call here takes more than a second)."""
MAX_TRANSIENT_IN_A_ROW = 5
"""A call answered with a transient error this many times in a row fails the test: a slow NATS answer on a busy
machine passes on the next send or the one after; one that stays transient is an outage, which this test has no kill
for (and no retry loop here may hide one)."""


@dataclass(frozen=True)
class Answer:
    """What one tool call came back with."""

    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    """The tool error code (``isError`` results), or None."""
    cut: bool = False
    """The serving process died before the answer came: the call may or may not have taken effect."""


class Flight:
    """Calls under way per kind, and a way to wait until one of a kind is."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._busy: dict[str, asyncio.Event] = {}

    def _event(self, kind: str) -> asyncio.Event:
        return self._busy.setdefault(kind, asyncio.Event())

    def begin(self, kind: str) -> None:
        self.counts[kind] += 1
        self._event(kind).set()

    def end(self, kind: str) -> None:
        self.counts[kind] -= 1
        if self.counts[kind] == 0:
            self._event(kind).clear()

    async def busy(self, kind: str) -> None:
        await self._event(kind).wait()

    def snapshot(self) -> dict[str, int]:
        return {kind: n for kind, n in self.counts.items() if n > 0}


@dataclass(eq=False)
class Gateway:
    """One serving `nats-mcp serve --transport http` process and its standbys; SIGKILL on demand.

    ``replacements`` processes are launched besides the first, ``standbys`` at a time (a launch is mostly the
    interpreter importing the server: two side by side get more of a busy machine than one after the other).
    """

    tmp_path: Path
    nats_url: str
    env: dict[str, str]
    replacements: int
    standbys: int = 2
    current: HttpServer | None = None
    launched: int = 0
    killed: list[HttpServer] = field(default_factory=list)
    launch_s: list[float] = field(default_factory=list)
    """How long each launch took, to a process accepting connections."""
    _standby: deque[asyncio.Task[HttpServer]] = field(default_factory=deque)
    _serving: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        first = asyncio.create_task(self._launch())
        for _ in range(min(self.standbys, self.replacements)):
            self._standby.append(asyncio.create_task(self._launch()))
        self.current = await first
        self._serving.set()

    async def _launch(self) -> HttpServer:
        name = f"serve-{self.launched}"
        self.launched += 1
        started = time.monotonic()
        server = await launch(self.tmp_path, name, self.nats_url, **self.env)
        self.launch_s.append(time.monotonic() - started)
        cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert any(part.endswith(b"nats-mcp") for part in cmdline) and b"serve" in cmdline, cmdline
        return server

    async def serving(self) -> HttpServer:
        """The serving process (waiting while it is being replaced)."""
        await self._serving.wait()
        assert self.current is not None
        return self.current

    def is_dead(self, server: HttpServer) -> bool:
        return any(server is victim for victim in self.killed)

    async def standby_ready(self) -> None:
        await asyncio.shield(self._standby[0])

    def kill(self) -> HttpServer:
        """SIGKILL the serving process now (no await: the caller's snapshot of what was under way stays true)."""
        victim = self.current
        assert victim is not None and victim.proc.returncode is None
        self.killed.append(victim)
        self._serving.clear()
        os.kill(victim.proc.pid, signal.SIGKILL)
        return victim

    async def replace(self, victim: HttpServer) -> None:
        """Reap the killed process, hand the agents the next standby, launch another if more are to come."""
        code = await victim.proc.wait()
        assert code == -signal.SIGKILL, f"{victim.name} ended with {code}, not by SIGKILL"
        self.current = await self._standby.popleft()
        if self.launched < 1 + self.replacements:
            self._standby.append(asyncio.create_task(self._launch()))
        self._serving.set()

    async def close(self) -> None:
        """Stop the serving process and the standbys cleanly (Ctrl-C)."""
        servers = [self.current] if self.current is not None else []
        for task in self._standby:
            if task.done() and not task.cancelled() and task.exception() is None:
                servers.append(task.result())
            else:
                task.cancel()  # a launch cut short kills the process it started
                with contextlib.suppress(BaseException):
                    await task
        for server in servers:
            if server.proc.returncode is None:
                await server.stop()


class Session:
    """One MCP session to one serve process, hosted in its own task."""

    def __init__(self, server: HttpServer, key: str, agent: str) -> None:
        self.server = server
        self._key = key
        self._agent = agent
        self._ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> Client:
        self._task = asyncio.create_task(self._host())
        return await self._ready

    async def _host(self) -> None:
        try:
            async with mcp_client(self.server.url, self._key, agent=self._agent) as client:
                self._ready.set_result(client)
                await self._closing.wait()
        except Exception as exc:  # the server died (an ExceptionGroup of the transport's errors), or opening failed
            if not self._ready.done():
                self._ready.set_exception(exc)

    async def close(self) -> None:
        self._closing.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task


class Agent:
    """One agent: an API key plus an agent name (so one stable identity on every serve process)."""

    def __init__(self, gateway: Gateway, key: str, name: str, flight: Flight) -> None:
        self.gateway = gateway
        self.key = key
        self.name = name
        self.flight = flight
        self.cuts: Counter[str] = Counter()
        """Calls per kind that a kill cut off (each is sent again by the code that made it)."""
        self.transient: Counter[str] = Counter()
        """Calls per kind answered with a transient error (sent again too)."""
        self.sends: Counter[str] = Counter()
        """Calls per kind sent (every send: the first, and each one again)."""
        self._session: Session | None = None
        self._client: Client | None = None

    async def _connect(self) -> tuple[Session, Client]:
        while True:
            if self._session is not None and self._client is not None:
                if not self.gateway.is_dead(self._session.server):
                    return self._session, self._client
                await self._session.close()
                self._session = self._client = None
            server = await self.gateway.serving()
            session = Session(server, self.key, self.name)
            try:
                client = await session.open()
            except Exception:
                if not self.gateway.is_dead(server):
                    raise
                continue  # killed while the session was being opened: on to its replacement
            self._session, self._client = session, client

    async def call(self, kind: str, tool: str, args: dict[str, Any]) -> Answer:
        """One call of ``tool``; ``kind`` names it for the in-flight counts."""
        session, client = await self._connect()
        self.sends[kind] += 1
        self.flight.begin(kind)
        try:
            result = await client.call_tool(tool, args, read_timeout_seconds=CALL_TIMEOUT_S)
        except Exception as exc:
            if not self.gateway.is_dead(session.server):
                raise AssertionError(f"{self.name}: {tool} failed while {session.server.name} was up: {exc!r}") from exc
            self.cuts[kind] += 1
            return Answer(cut=True)
        finally:
            self.flight.end(kind)
        if result.is_error:
            error = dict((result.meta or {}).get(ERROR_META) or {})
            return Answer(error, str(error.get("code")))
        return Answer(dict(result.structured_content or {}))

    async def ask(
        self, kind: str, tool: str, args: dict[str, Any] | Callable[[], dict[str, Any]]
    ) -> tuple[Answer, int]:
        """Call until answered for good: a call a kill cut off, or answered with a transient error (a slow NATS
        answer on a busy machine), is sent again (with fresh ``args()`` if a function makes them). Also returns how
        many sends went unanswered. Bounded: each cut needs a kill of its own (the call is sent again to the next
        process), and more than MAX_TRANSIENT_IN_A_ROW transient answers fail the test."""
        cuts = transients = 0
        while True:
            answer = await self.call(kind, tool, args() if callable(args) else args)
            if not answer.cut and answer.error not in TRANSIENT:
                return answer, cuts + transients
            if answer.cut:
                cuts += 1
                killed = len(self.gateway.killed)
                assert cuts <= killed, f"{self.name}: {tool} cut off {cuts} times by {killed} kills"
            else:
                transients += 1
                self.transient[kind] += 1
                assert transients <= MAX_TRANSIENT_IN_A_ROW, (
                    f"{self.name}: {tool} answered {answer.error!r} {transients} times in a row"
                )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = self._client = None
