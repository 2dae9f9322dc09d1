"""Benchmark boundary of the security guard: what one tool call costs with and without it, measured in one run.

    .venv/bin/python bench/guard.py [--quick]

The cheapest real tool (``warp_channels_list``: no NATS round trip) is called sequentially through the
MCP SDK's in-memory client against the low-level server built three ways, sampled alternately:

a. no guard (the baseline);
b. the guard with the built-in policy and no audit sink: address filter, rate limits, size and depth
   checks, the policy decision;
c. as b, plus the hash-chained audit log writing to a JSONL file.

Reports the median calls/s of each and the time the guard adds per call, as a share of the baseline call
(target: at most 15 % added). Writes bench/results/guard.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from audit_modes import NoopSink  # noqa: E402
from mcp import Client  # noqa: E402

from nats_mcp.api.server import build_server, local_security  # noqa: E402
from nats_mcp.api.tools.coordination import needs_of  # noqa: E402
from nats_mcp.bus.connection import NatsConnection  # noqa: E402
from nats_mcp.config.loader import load_settings  # noqa: E402
from nats_mcp.config.security import AuditSettings  # noqa: E402
from nats_mcp.coord.context import Caller  # noqa: E402
from nats_mcp.coord.service import Coordinator  # noqa: E402
from nats_mcp.security.audit.log import AuditLog  # noqa: E402
from nats_mcp.security.guard import CallContext, Guard  # noqa: E402
from nats_mcp.security.identity import local_principal  # noqa: E402
from nats_mcp.security.policy import Policy  # noqa: E402

TOOL = "warp_channels_list"


def make_audit(path: Path) -> AuditLog:
    """The real hash-chained audit log, writing to a JSONL file only (bench/audit.py measures the stream sink)."""
    return AuditLog.from_settings(AuditSettings(stream=False, file=path), None, transport="stdio")


async def rate(client: Client, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        result = await client.call_tool(TOOL, {})
        assert not result.is_error, result
    return calls / (time.perf_counter() - started)


async def guard_alone(settings: Any, *, audited: bool = False) -> float:
    """Microseconds one Guard.call costs around a call that does nothing (median of 5 x 20,000); ``audited``: with
    the audit log sealing each record (a no-op sink) and arguments to check and digest, as a real call has."""
    audit = AuditLog([NoopSink()], max_pending=50_000) if audited else None
    guard = Guard(settings.security, Policy.load(None), audit)
    ctx = CallContext(local_principal(settings.security), "stdio", "bench")
    args = {"channel": "general", "message": "x" * 200, "metadata": {"k": "v"}} if audited else {}

    async def nothing() -> str:
        return "ok"

    def outcome(result: str) -> str:
        return result

    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(20_000):
            await guard.call(ctx, "channels_list", args, nothing, outcome, needs=needs_of("channels_list"))
        runs.append((time.perf_counter() - started) / 20_000 * 1e6)
        if audit is not None:
            assert await audit.flush(10)
    if audit is not None:
        await audit.close()
    return statistics.median(runs)


async def main(quick: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="nmcp-guard-bench-"))
    settings = load_settings(
        environ={"HOME": str(tmp), "NATS_URL": "nats://127.0.0.1:1", "NATS_MCP_NAMESPACE": "bench"}
    ).settings
    conn = NatsConnection(settings)  # never started: the measured tool needs no NATS
    coordinator = Coordinator(conn, settings)
    me = Caller(guid="0" * 32, namespace="bench", project_id="0" * 16, owner="bench")

    async def caller() -> Caller:
        return me

    policy = Policy.load(None)
    variants: dict[str, Any] = {
        "no guard": build_server(coordinator, caller, settings.tool_prefix),
        "guard": build_server(
            coordinator,
            caller,
            settings.tool_prefix,
            local_security(Guard(settings.security, policy), settings.security, "bench"),
        ),
    }
    audit = make_audit(tmp / "audit.jsonl")
    guarded = Guard(settings.security, policy, audit)
    variants["guard + audit (file)"] = build_server(
        coordinator, caller, settings.tool_prefix, local_security(guarded, settings.security, "bench")
    )
    rounds, calls = (15, 200) if quick else (41, 300)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            name: await stack.enter_async_context(Client(server, mode="legacy")) for name, server in variants.items()
        }
        for client in clients.values():
            await rate(client, 50)  # warm up
        for _ in range(rounds):
            for name, client in clients.items():
                samples[name].append(await rate(client, calls))
    await audit.close()
    # Paired: each round measured every variant back to back, so the ratio within a round cancels most of
    # what the other tenants of this machine did to the round.
    base = statistics.median(samples["no guard"])
    paired = {
        name: statistics.median(b / v - 1 for b, v in zip(samples["no guard"], values, strict=True))
        for name, values in samples.items()
    }
    direct = await guard_alone(settings)
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "rounds": rounds,
        "calls_per_round": calls,
        "tool": TOOL,
        "variants": {},
    }
    print(f"{'variant':24} {'median calls/s':>15} {'min..max':>17} {'added per call':>16}")
    for name, values in samples.items():
        median = statistics.median(values)
        added = paired[name]  # extra time per call as a share of the baseline call, median of paired rounds
        report["variants"][name] = {"median": median, "min": min(values), "max": max(values), "added": added}
        print(f"{name:24} {median:15.0f} {min(values):8.0f}..{max(values):<8.0f} {added * 100:15.1f}%")
    report["guard_alone_us"] = direct
    report["guard_audited_alone_us"] = audited = await guard_alone(settings, audited=True)
    print(f"the guard + audit record (no-op sink, 3 arguments) around a no-op call: {audited:.1f} us")
    share = direct / (1e6 / base)
    print(
        f"the guard alone (no-op call, {direct:.1f} us) is {share * 100:.1f} % of a baseline call ({1e6 / base:.0f} us)"
    )
    print(f"target: the guard adds at most 15 % per call; measured {report['variants']['guard']['added'] * 100:.1f} %")
    added = report["variants"]["guard"]["added"]
    report["target"] = {
        "measure": "time per call with the guard (paired)",
        "baseline": "no guard",
        "ratio": 1 + added,
        "target": "<= 1.15x",
        "met": added <= 0.15,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "guard.json").write_text(json.dumps(report, indent=2))
    return report


async def alone_only() -> None:
    """``--alone``: only the in-process figures (run with ``PYTHONPATH=DIR/src`` for another tree's "before")."""
    tmp = Path(tempfile.mkdtemp(prefix="nmcp-guard-bench-"))
    settings = load_settings(
        environ={"HOME": str(tmp), "NATS_URL": "nats://127.0.0.1:1", "NATS_MCP_NAMESPACE": "bench"}
    ).settings
    plain, audited = await guard_alone(settings), await guard_alone(settings, audited=True)
    print(f"Guard.call around a no-op call: {plain:.1f} us; with the audit record and 3 arguments: {audited:.1f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 20 s)")
    parser.add_argument("--alone", action="store_true", help="only Guard.call in process, without and with audit")
    options = parser.parse_args()
    asyncio.run(alone_only() if options.alone else main(options.quick))
