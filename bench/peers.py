"""Benchmark boundary of the side-by-side comparison: our server against Warp, the SDK's echo and the Python floor.

    scripts/peers                              # once: builds Warp (and mcp-nats) into .cache/peers/
    .venv/bin/python bench/peers.py [--quick]

Not in CI. Each side is driven by the same Python SDK client over stdio against one nats-server:

* ours: ``nats-mcp serve`` (embedded settings off, the shared nats-server, a private HOME and project);
* Warp: loominal/warp built by ``scripts/peers`` (skipped, and said so, when it is not built);
* the SDK echo: an echo tool on the SDK's low-level ``Server`` (bench/echo_server.py): what a Python MCP server
  built on the SDK pays (ours no longer is: it owns ``tools/call`` on stdio, api/direct.py);
* the Python floor (bench/floor_server.py), our tools with canned results on plain asyncio and ``json``, no SDK per
  call, in both modes: ``py floor`` (``--nats publish``: each call's audit record published and acknowledged in the
  background, ``channels_send``'s message published before answering: the least NATS work our calls do) and
  ``bare`` (``--nats none``: Python's stdio JSON-RPC floor).

For every operation the sides run in paired rounds (ours, Warp, py floor, bare, then the reverse order, ...), N
sequential calls per round per side; the table gives the median calls/s of each side, the ratios ours/Warp and
floor/Warp, the issue's target and verdict, and the floor's verdict: when even the floor is below the target times
Warp, that target is out of reach for any Python server doing that work (this client, this machine). Start-up is
spawn → ``initialize`` → first ``tools/list``, alternating fresh processes (ours, Warp, the echo). Memory is each
peer's peak RSS (VmHWM) after the workload. Writes bench/results/peers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402
from mcp import Client, StdioServerParameters, stdio_client  # noqa: E402
from stdio_tools import BenchError, _text, nats_ready, register_agents  # noqa: E402
from tests.support.env import isolated_env, nats_mcp_exe  # noqa: E402
from tests.support.natsserver import NatsServer, wait_for  # noqa: E402

from nats_mcp.config.loader import load_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PEERS = ROOT / ".cache" / "peers"
WARP = PEERS / "warp" / "dist" / "index.js"
ECHO_SERVER = ROOT / "bench" / "echo_server.py"
FLOOR_SERVER = ROOT / "bench" / "floor_server.py"
FLOORS = {"floor": "publish", "bare": "none"}
"""The Python floor's sides and their ``--nats`` mode."""
FLOOR_HANDLE = "bench-floor"
NAMESPACE = "peers"
CHANNEL = "parallel-work"
CAPABILITY = "bench"
MESSAGE = "benchmark message: " + "x" * 80
AGENTS = 500
CALL_TIMEOUT_S = 30.0
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Plan:
    rounds: int
    calls: int
    reads: int
    discovers: int
    startups: int


QUICK = Plan(rounds=3, calls=100, reads=20, discovers=10, startups=3)
FULL = Plan(rounds=5, calls=300, reads=60, discovers=40, startups=7)


@dataclass
class Side:
    """One server under test: its client session and its process."""

    name: str
    client: Client
    pid: int
    handle: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


Call = Callable[[], Awaitable[object]]


def _children() -> set[int]:
    """The pids of this process's children (the SDK's stdio client does not expose the one it spawns)."""
    me, out = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                out.add(int(entry.name))
    return out


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmHWM for pid {pid}")


async def call(client: Client, tool: str, arguments: dict[str, Any], expect: str | None = None) -> str:
    """Call a tool; an error result stops the bench. Returns the reply's text (checked for ``expect``)."""
    result = await client.call_tool(tool, arguments, read_timeout_seconds=CALL_TIMEOUT_S)
    text = _text(result)
    if result.is_error or (expect is not None and expect not in text):
        raise BenchError(f"{tool}({arguments}) answered: {text[:300]}")
    return text


class Servers:
    """Starts the servers under test against one nats-server, each in its own HOME and project directory."""

    def __init__(self, base: Path, url: str, stack: AsyncExitStack) -> None:
        self.base, self.url, self.stack = base, url, stack
        self.logs: dict[str, Path] = {}

    def argv_env(self, name: str, project: Path | None = None) -> tuple[list[str], dict[str, str], Path]:
        if project is None:
            project = self.base / f"project-{name}-{uuid.uuid4().hex[:6]}"
        project.mkdir(exist_ok=True)
        if name == "ours":
            env = isolated_env(project, NATS_URL=self.url, NATS_MCP_NAMESPACE=NAMESPACE)
            return [nats_mcp_exe(), "serve"], env, project
        if name == "warp":
            env = isolated_env(project, NATS_URL=self.url, MCP_PROJECT_PATH=str(project), LOG_LEVEL="ERROR")
            return ["node", str(WARP)], env, project
        if name in FLOORS:
            prefix = f"floor-{uuid.uuid4().hex[:8]}"  # its own stream: the sides share one nats-server
            argv = [sys.executable, str(FLOOR_SERVER), "--nats", FLOORS[name], "--url", self.url, "--prefix", prefix]
            return argv, isolated_env(project), project
        env = isolated_env(project)
        return [sys.executable, str(ECHO_SERVER)], env, project

    async def start(self, name: str, stack: AsyncExitStack | None = None, project: Path | None = None) -> Side:
        argv, env, project = self.argv_env(name, project)
        log = self.base / f"{name}.log"
        self.logs[name] = log
        errlog = (stack or self.stack).enter_context(log.open("a"))
        before = _children()
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=str(project))
        client = await (stack or self.stack).enter_async_context(Client(stdio_client(params, errlog=errlog)))
        await client.list_tools()
        spawned = _children() - before
        if len(spawned) != 1:
            raise BenchError(f"{name}: expected one new child process, found {sorted(spawned)}")
        return Side(name, client, spawned.pop())


async def startup_ms(servers: Servers, name: str) -> float:
    """Spawn → initialize → first tools/list of a fresh process, then close it.

    Every start of a server is in the same project directory and HOME, as a client starts it session after
    session: ours then answers from its start-up cache (transports/stdio_front.py), recorded by the first start,
    which run() makes before measuring (bench/startup.py measures the start without an entry too)."""
    async with AsyncExitStack() as stack:
        start = time.perf_counter()
        await servers.start(name, stack, servers.base / f"project-{name}-startup")
        return (time.perf_counter() - start) * 1e3


async def rate(fn: Call, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await fn()
    return n / (time.perf_counter() - start)


@dataclass
class Row:
    op: str
    ours: float
    warp: float | None
    echo: float | None
    unit: str
    target: float | None
    """ours/Warp must be at least this (calls/s) or at most this (ms, MiB); None: shown for context."""
    higher_is_better: bool = True
    floor: float | None = None
    """The Python floor with its NATS work (bench/floor_server.py --nats publish)."""
    bare: float | None = None
    """The Python floor without NATS (--nats none)."""
    cpu_ms: dict[str, float] = field(default_factory=dict)
    """Server CPU ms per call of each side (calls/s rows)."""

    def _of_warp(self, value: float | None) -> float | None:
        return None if value is None or self.warp is None or self.warp == 0 else value / self.warp

    @property
    def ratio(self) -> float | None:
        return self._of_warp(self.ours)

    @property
    def floor_ratio(self) -> float | None:
        return self._of_warp(self.floor)

    @property
    def bare_ratio(self) -> float | None:
        return self._of_warp(self.bare)

    @property
    def floor_verdict(self) -> str:
        """Whether the Python floor itself misses the target: then no Python server doing this work meets it."""
        if self.target is None or not self.higher_is_better or self.floor_ratio is None:
            return "-"
        if self.floor_ratio >= self.target:  # (a bare floor measured below it is noise: it does less)
            return "floor clears it"
        if self.bare_ratio is not None and self.bare_ratio < self.target:
            return "out of reach, even without NATS"
        return "out of reach"

    @property
    def verdict(self) -> str:
        if self.target is None or self.ratio is None:
            return "-"
        met = self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target
        return "met" if met else "NOT met"


def rates_row(
    op: str, got: tuple[dict[str, float], dict[str, float]], echo: float | None = None, target: float | None = None
) -> Row:
    """A calls/s row of every side measured (no Warp when it is not built), with their CPU per call."""
    rates, cpu = got
    out = Row(op, rates["ours"], rates.get("warp"), echo, "calls/s", target, floor=rates.get("floor"))
    out.bare, out.cpu_ms = rates.get("bare"), cpu
    return out


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (as bench/stdio_hot.py reads it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def paired(
    sides: list[Side], ops: dict[str, Call], n: int, rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median calls/s and server CPU ms per call of each side over ``rounds`` rounds, the order of the sides
    alternating between rounds. The CPU is the server process's own (user + system, /proc), not the client's."""
    runs: dict[str, list[float]] = {s.name: [] for s in sides}
    cpus: dict[str, list[float]] = {s.name: [] for s in sides}
    for r in range(rounds):
        for side in sides if r % 2 == 0 else list(reversed(sides)):
            before = cpu_s(side.pid)
            runs[side.name].append(await rate(ops[side.name], n))
            cpus[side.name].append((cpu_s(side.pid) - before) * 1e3 / n)
    median = statistics.median
    return {k: median(v) for k, v in runs.items()}, {k: median(v) for k, v in cpus.items()}


def ops_of(side: Side, counter: list[int]) -> dict[str, Call]:
    client = side.client

    def broadcast() -> Awaitable[str]:
        counter[0] += 1
        args = {"taskId": f"t-{counter[0]}", "description": "bench task", "requiredCapability": CAPABILITY}
        return call(client, "warp_work_broadcast", args)

    return {
        "handle_get": lambda: call(client, "warp_handle_get", {}, side.handle),
        "channels_send": lambda: call(client, "warp_channels_send", {"channel": CHANNEL, "message": MESSAGE}),
        "work_broadcast": broadcast,
        "work_claim": lambda: call(client, "warp_work_claim", {"capability": CAPABILITY, "timeout": 1000}),
        "channels_read": lambda: call(client, "warp_channels_read", {"channel": CHANNEL, "limit": 50}),
        "registry_discover": lambda: call(client, "warp_registry_discover", {}),
    }


async def prepare(side: Side) -> None:
    side.handle = f"bench-{side.name}"
    await call(side.client, "warp_handle_set", {"handle": side.handle})
    args = {"agentType": "bench-agent", "capabilities": [CAPABILITY], "scope": "team"}
    await call(side.client, "warp_registry_register", args)


async def fill_warp_registry(url: str, count: int) -> None:
    """``count`` agents in Warp's registry bucket, in its entry format (public, online), as its discover reads."""
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value("agent-registry")
        now = datetime.now(UTC).isoformat()
        for i in range(count):
            guid = str(uuid.uuid4())
            entry = {
                "guid": guid,
                "agentType": "bench-agent",
                "handle": f"agent-{i}",
                "hostname": "bench",
                "projectId": "0" * 16,
                "natsUrl": url,
                "capabilities": [CAPABILITY],
                "scope": "public",
                "status": "online",
                "currentTaskCount": 0,
                "registeredAt": now,
                "lastHeartbeat": now,
            }
            await kv.put(guid, json.dumps(entry).encode())
    finally:
        await nc.close()


async def run(plan: Plan) -> dict[str, Any]:
    have_warp = WARP.is_file()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        base = Path(tmp)
        with NatsServer(base / "nats").start() as server:
            async with AsyncExitStack() as stack:
                servers = Servers(base, server.url, stack)
                names = ["ours", "warp"] if have_warp else ["ours"]
                # Start-up: fresh processes, alternating, before anything else runs.
                starts: dict[str, list[float]] = {n: [] for n in [*names, "echo"]}
                for name in starts:  # not counted: each side's first start in its directory
                    await startup_ms(servers, name)
                for i in range(plan.startups):
                    order = [*names, "echo"] if i % 2 == 0 else ["echo", *reversed(names)]
                    for name in order:
                        starts[name].append(await startup_ms(servers, name))
                med = {n: statistics.median(v) for n, v in starts.items()}
                rows.append(
                    Row("startup → first tools/list", med["ours"], med.get("warp"), med["echo"], "ms", 1.5, False)
                )
                peers = [await servers.start(n) for n in names]
                floors = [await servers.start(n) for n in FLOORS]
                for side in floors:
                    side.handle = FLOOR_HANDLE
                sides = peers + floors
                echo = await servers.start("echo")
                ours = sides[0]
                await wait_for(lambda: nats_ready(ours.client), 30, message="ours: NATS never became available")
                for side in peers:
                    await prepare(side)
                counter = [0]
                table = {s.name: ops_of(s, counter) for s in sides}

                async def echo_call() -> str:
                    return await call(echo.client, "echo", {"text": "x"})

                echo_rate = await rate(echo_call, plan.calls)
                targets = {"handle_get": 1.0, "channels_send": 1.0, "work_broadcast": 1.0, "work_claim": 1.0}
                for op in ("handle_get", "channels_send", "work_broadcast", "work_claim"):
                    for side in sides:  # warm-up, untimed
                        for _ in range(10 if op != "work_claim" else 0):
                            await table[side.name][op]()
                    got = await paired(sides, {k: v[op] for k, v in table.items()}, plan.calls, plan.rounds)
                    rows.append(rates_row(op, got, echo_rate, targets[op]))
                got = await paired(sides, {k: v["channels_read"] for k, v in table.items()}, plan.reads, plan.rounds)
                rows.append(rates_row("channels_read limit 50", got, None, 3.0))
                env = isolated_env(base, NATS_URL=server.url, NATS_MCP_NAMESPACE=NAMESPACE)
                await register_agents(load_settings(environ=env).settings, AGENTS - 1)
                if have_warp:
                    await fill_warp_registry(server.url, AGENTS - 1)
                ops = {k: v["registry_discover"] for k, v in table.items() if k not in FLOORS}
                discovers = (plan.discovers, plan.rounds)
                rows.append(rates_row(f"registry_discover at {AGENTS} agents", await paired(peers, ops, *discovers)))
                rss = {s.name: peak_rss_mib(s.pid) for s in peers}
                rows.append(Row("peak RSS after the workload", rss["ours"], rss.get("warp"), None, "MiB", 1.0, False))
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "plan": asdict(plan),
        "warp": str(WARP) if have_warp else None,
        "rows": [row_json(r) for r in rows],
    }


def row_json(r: Row) -> dict[str, Any]:
    """A row as bench/run_all.py reads ratios: ``name``, ``ratio``, ``target`` and ``met``."""
    target: str | float | None = r.target
    if r.target is not None and not r.higher_is_better:
        target = f"<= {r.target}x"
    met = None if r.verdict == "-" else r.verdict == "met"
    named = {"name": f"{r.op} (ours/Warp)", "ratio": r.ratio, "target": target, "met": met, "verdict": r.verdict}
    floor = {"floor_ratio": r.floor_ratio, "bare_ratio": r.bare_ratio, "floor_verdict": r.floor_verdict}
    return {**asdict(r), **named, **floor}


def _cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(result: dict[str, Any]) -> None:
    head = f"{'op':<32} {'unit':>7} {'ours':>8} {'Warp':>8} {'SDK echo':>8} {'py floor':>8} {'bare':>8}"
    print(f"{head} {'ours/Warp':>9} {'floor/Warp':>10} {'bare/Warp':>9} {'target':>8}  verdict; the floor's")
    for r in result["rows"]:
        target = r["target"] if isinstance(r["target"], str) or r["target"] is None else f">= {r['target']}x"
        sides = f"{_cell(r['ours']):>8} {_cell(r['warp']):>8} {_cell(r['echo']):>8} {_cell(r['floor']):>8}"
        ratios = f"{_cell(r['ratio'], 2):>9} {_cell(r['floor_ratio'], 2):>10} {_cell(r['bare_ratio'], 2):>9}"
        verdicts = r["verdict"] if r["floor_verdict"] == "-" else f"{r['verdict']}; {r['floor_verdict']}"
        print(f"{r['op']:<32} {r['unit']:>7} {sides} {_cell(r['bare']):>8} {ratios} {target or '-':>8}  {verdicts}")
    print("py floor: bench/floor_server.py --nats publish (canned results; each call's audit record published and")
    print("acknowledged in the background, channels_send's message before the answer); bare: --nats none (no NATS).")
    print("'out of reach': the floor's own ratio to Warp is below the target, so no Python server doing that work")
    print("over this client meets it.")
    if result["warp"] is None:
        print("Warp is not built (run scripts/peers): only our side, the SDK echo and the Python floor were measured.")
    names = {"ours": "ours", "warp": "Warp", "floor": "py floor", "bare": "bare"}
    print(f"\n{'server CPU ms per call':<32} " + " ".join(f"{n:>8}" for n in names.values()))
    for r in result["rows"]:
        if r["cpu_ms"]:
            print(f"{r['op']:<32} " + " ".join(f"{_cell(r['cpu_ms'].get(k), 3):>8}" for k in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls (a few minutes)")
    args = parser.parse_args()
    try:
        result = asyncio.run(run(QUICK if args.quick else FULL))
    except BenchError as exc:
        sys.exit(f"bench/peers.py: {exc}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "peers.json").write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)


if __name__ == "__main__":
    main()
