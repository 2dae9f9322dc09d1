"""Benchmark boundary of the HTTP drain under load: rolling restarts of two replicas while workers call tools.

    .venv/bin/python bench/http_rolling.py [--quick] [--workers 20] [--cycles 2] [--delay 1] [--sticky]

One real nats-server, two ``nats-mcp serve --transport http --insecure-dev`` replicas (rate limits raised), a
client-side balancer that follows ``/readyz`` (polled every 0.2 s, as a load balancer's health check would), and
``--workers`` tasks calling ``warp_channels_list`` (protocol 2026-07-28, one request per call) back to back, each
on its own keep-alive connections. Every replica is restarted in turn (SIGTERM, wait for its exit, start a new
one, wait until it is ready) ``--cycles`` times. A worker picks a ready replica for every call, or with
``--sticky`` keeps its replica until an answer says ``Connection: close`` (an L4 balancer such as kube-proxy,
where a kept-alive connection goes on reaching the pod it was opened to). A 503 (the drain's refusal) is sent
again to a replica, as a client or proxy would; anything else that is not an answer counts as failed.

Prints the calls answered, refused and retried, failed (by error), each replica's exit code and drain time, and
the failures per thousand calls. ``--delay`` sets ``http.drain_delay_s``; 0 shows the drain without the time a
balancer needs to notice.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

import httpx2  # noqa: E402
from tests.support.env import isolated_env, nats_mcp_exe  # noqa: E402
from tests.support.natsserver import NatsServer, wait_for  # noqa: E402

META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "rolling", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
HEADERS = {
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
    "mcp-protocol-version": "2026-07-28",
    "mcp-method": "tools/call",
    "mcp-name": "warp_channels_list",
}
UNLIMITED = {
    f"NATS_MCP_SECURITY_RATE_PER_{who}_{what}": "1000000"
    for who in ("PRINCIPAL", "ADDRESS")
    for what in ("RATE_PER_S", "BURST")
}
PROBE_INTERVAL_S = 0.2
ATTEMPTS = 5


class Replica:
    """One serve process, restarted under the same name."""

    def __init__(self, name: str, base: Path, nats_url: str, delay_s: float) -> None:
        self.name, self.base, self.nats_url, self.delay_s = name, base, nats_url, delay_s
        self.runs = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.url: str | None = None

    async def start(self) -> None:
        self.runs += 1
        run = self.base / f"{self.name}{self.runs}"
        run.mkdir(parents=True)
        port_file = run / "port"
        env = isolated_env(
            run,
            NATS_URL=self.nats_url,
            NATS_MCP_NAMESPACE="rolling",
            NATS_MCP_HTTP_PORT_FILE=str(port_file),
            NATS_MCP_HTTP_DRAIN_DELAY_S=str(self.delay_s),
            NATS_MCP_HTTP_DRAIN_TIMEOUT_S="10",
            **UNLIMITED,
        )
        with (run / "serve.log").open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *(nats_mcp_exe(), "serve", "--transport", "http", "--port", "0", "--insecure-dev"),
                env=env,
                cwd=run,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        proc = self.proc

        def port() -> int | None:
            if proc.returncode is not None:
                raise RuntimeError(f"{self.name} exited:\n{(run / 'serve.log').read_text()[-2000:]}")
            text = port_file.read_text() if port_file.exists() else ""
            return int(text) if text.endswith("\n") else None

        self.url = f"http://127.0.0.1:{await wait_for(port, 60)}"

    async def stop(self) -> tuple[int, float]:
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = await self.proc.wait()
        self.url = None
        return code, time.monotonic() - started


class Run:
    def __init__(self) -> None:
        self.ready: dict[str, str] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()

    async def balance(self, replicas: list[Replica]) -> None:
        async with httpx2.AsyncClient(timeout=2, trust_env=False) as probe:
            while True:
                for r in replicas:
                    up = False
                    if r.url is not None:
                        with contextlib.suppress(httpx2.HTTPError):
                            up = (await probe.get(f"{r.url}/readyz")).status_code == 200
                    if up and r.url is not None:
                        self.ready[r.name] = r.url
                    else:
                        self.ready.pop(r.name, None)
                await asyncio.sleep(PROBE_INTERVAL_S)

    async def work(self, worker: int, stop: asyncio.Event, sticky: bool) -> None:
        headers = dict(HEADERS, **{"x-nats-mcp-agent": f"w{worker}"})
        async with httpx2.AsyncClient(timeout=30, trust_env=False) as client:
            base: str | None = None
            n = 0
            while not stop.is_set():
                n += 1
                params = {"name": "warp_channels_list", "arguments": {}, "_meta": META}
                body = {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": params}
                for _ in range(ATTEMPTS):
                    await wait_for(lambda: self.ready, 60, interval=0.01)
                    if base is None or not sticky:
                        base = secrets.choice(list(self.ready.values()))
                    try:
                        answer = await client.post(f"{base}/mcp", json=body, headers=headers)
                    except httpx2.TransportError as exc:
                        self.counts["failed"] += 1
                        self.errors[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
                        base = None
                        break
                    if answer.headers.get("connection") == "close":
                        base = None  # the next connection goes through the balancer
                    if answer.status_code == 503:
                        self.counts["refused and sent again"] += 1
                        continue
                    if answer.status_code == 200 and '"result"' in answer.text:
                        self.counts["answered"] += 1
                    else:
                        self.counts["failed"] += 1
                        self.errors[f"HTTP {answer.status_code}: {answer.text[:60]}"] += 1
                    break


async def main(workers: int, cycles: int, delay_s: float, sticky: bool) -> None:
    base = Path(tempfile.mkdtemp(prefix="http-rolling-"))
    with NatsServer(base / "nats").start() as nats:
        replicas = [Replica(name, base, nats.url, delay_s) for name in ("a", "b")]
        run = Run()
        try:
            for r in replicas:
                await r.start()
            balancer = asyncio.create_task(run.balance(replicas))
            await wait_for(lambda: len(run.ready) == len(replicas), 60)
            stop = asyncio.Event()
            tasks = [asyncio.create_task(run.work(i, stop, sticky)) for i in range(workers)]
            await asyncio.sleep(2)  # load before the first restart
            exits = []
            for _ in range(cycles):
                for r in replicas:
                    exits.append(await r.stop())
                    await r.start()
                    await wait_for(lambda: r.name in run.ready, 60)  # noqa: B023 - awaited in the loop
                    await asyncio.sleep(1)  # load on both again before the next one
            stop.set()
            await asyncio.gather(*tasks)
            balancer.cancel()
        finally:
            for r in replicas:
                if r.proc is not None and r.proc.returncode is None:
                    r.proc.send_signal(signal.SIGTERM)
                    await r.proc.wait()
    mode = "sticky (L4)" if sticky else "per call"
    print(f"{workers} workers, {cycles} cycles x 2 replicas, drain_delay_s {delay_s}, balancing {mode}")
    print("exits (code, seconds):", [(code, round(took, 1)) for code, took in exits])
    for what in ("answered", "refused and sent again", "failed"):
        print(f"  {what:<24} {run.counts[what]:>7}")
    for error, count in run.errors.most_common():
        print(f"    {count:>5}  {error}")
    calls = run.counts["answered"] + run.counts["failed"]
    print(f"  failed per 1000 calls    {1000 * run.counts['failed'] / max(1, calls):>7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--delay", type=float, default=1.0, help="http.drain_delay_s")
    parser.add_argument("--sticky", action="store_true", help="keep a replica until Connection: close")
    parser.add_argument("--quick", action="store_true", help="10 workers, one cycle")
    args = parser.parse_args()
    if args.quick:
        args.workers, args.cycles = 10, 1
    asyncio.run(main(args.workers, args.cycles, args.delay, args.sticky))
