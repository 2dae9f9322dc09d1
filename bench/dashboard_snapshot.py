"""Dashboard snapshot benchmark: what one refresh of the page (or of `nats-mcp top`) costs the server.

    .venv/bin/python bench/dashboard_snapshot.py [--quick]

Starts its own nats-server and fills one namespace: 200 registered agents, the three default channels with 50
messages each, 5 capabilities with 40 queued items each, 2,000 audit records (tool calls and auth failures).
Then measures, in alternation: a whole snapshot (``Dashboard.build``, as each refresh interval runs it at most
once however many viewers), its biggest parts (queue status, channel status) and the baseline of one bare
JetStream request (account info). Prints medians and ratios; writes bench/results/dashboard_snapshot.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.natsserver import NatsServer  # noqa: E402

from nats_mcp.bus.connection import NatsConnection  # noqa: E402
from nats_mcp.bus.layout import Layout  # noqa: E402
from nats_mcp.config.loader import load_settings  # noqa: E402
from nats_mcp.coord.channels import ChannelService  # noqa: E402
from nats_mcp.coord.context import Caller  # noqa: E402
from nats_mcp.coord.registry.service import RegistryService  # noqa: E402
from nats_mcp.coord.work.service import WorkService  # noqa: E402
from nats_mcp.dashboard.data import Dashboard  # noqa: E402
from nats_mcp.security.audit.event import AuditEvent  # noqa: E402
from nats_mcp.security.audit.log import AuditLog  # noqa: E402
from nats_mcp.security.principal import Principal  # noqa: E402

NS = "bench"
AGENTS, MESSAGES, CAPS, ITEMS, AUDIT = 200, 50, 5, 40, 2_000


def caller() -> Caller:
    return Caller(guid=uuid.uuid4().hex, namespace=NS, project_id="0" * 16, owner="bench")


async def seed(conn: NatsConnection) -> None:
    settings, layout = conn.settings, Layout(NS)
    registry = RegistryService(conn, settings, layout)
    await registry.start()
    for i in range(AGENTS):
        await registry.register(
            caller(), handle=f"agent-{i}", agent_type="worker", capabilities=[f"cap{i % CAPS}"], scope="team"
        )
    await registry.close()
    channels = ChannelService(conn, settings, layout)
    await channels.ensure_streams()
    for c in settings.channels:
        for i in range(MESSAGES):
            await channels.send(caller(), "bench", c.name, f"message {i} on {c.name}")
    work = WorkService(conn, settings, layout)
    await work.ensure()
    for cap in range(CAPS):
        for i in range(ITEMS):
            await work.broadcast(caller(), task_id=f"t{i}", description="bench", capability=f"cap{cap}")
    audit = AuditLog.from_settings(settings.security.audit, conn, transport="http")
    who = Principal(subject="bench-agent", issuer="bench", method="apikey", key_id="k")
    for i in range(AUDIT):
        if i % 40 == 0:
            audit.record(
                AuditEvent(
                    "auth_failure",
                    principal=None,
                    transport="http",
                    peer="127.0.0.1",
                    outcome="unauthenticated",
                    reason="bad_signature",
                ),
            )
        else:
            audit.record(
                AuditEvent(
                    "tool_call",
                    principal=who,
                    transport="http",
                    peer="127.0.0.1",
                    tool=f"tool_{i % 7}",
                    namespace=NS,
                    outcome="ok",
                    latency_ms=1.0,
                ),
            )
    await audit.close()


async def sample(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


async def run(rounds: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, NatsServer(Path(tmp) / "nats", jetstream=True) as server:
        settings = load_settings(environ={"HOME": tmp, "NATS_URL": server.url, "NATS_MCP_NAMESPACE": NS}).settings
        conn = NatsConnection(settings)
        conn.start()
        assert await conn.wait_connected(10)
        try:
            await seed(conn)
            dash = Dashboard(conn, settings)
            t = time.perf_counter()
            first = await dash.build()
            cold_ms = (time.perf_counter() - t) * 1e3
            assert not first["errors"], first["errors"]
            assert first["agents"]["total"] == AGENTS and len(first["queues"]) == CAPS
            ops: dict[str, Callable[[], Awaitable[object]]] = {
                "baseline_account_info": conn.jetstream.account_info,
                "queue_status": dash.work.views.status,
                "channel_status": dash.channels.status,
                "snapshot_build": dash.build,
            }
            samples: dict[str, list[float]] = {op: [] for op in ops}
            for _ in range(rounds):
                for op, fn in ops.items():
                    samples[op] += await sample(fn, 5)
            await dash.aclose()
        finally:
            await conn.close()
    medians = {op: round(statistics.median(v) * 1e3, 3) for op, v in samples.items()}
    base = medians["baseline_account_info"]
    return {
        "seeded": dict(
            agents=AGENTS,
            messages_per_channel=MESSAGES,
            capabilities=CAPS,
            items_per_capability=ITEMS,
            audit_records=AUDIT,
        ),
        "first_build_ms": round(cold_ms, 1),
        "median_ms": medians,
        "ratio_to_baseline": {op: round(m / base, 1) for op, m in medians.items()},
        "core_share_at_2s_refresh": round(medians["snapshot_build"] / 2000, 4),
        "n": {op: len(v) for op, v in samples.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(run(2 if args.quick else 8))
    print(f"first snapshot (reads {AUDIT} audit records): {results['first_build_ms']} ms")
    print(f"{'operation':<24}{'median ms':>12}{'x baseline':>12}")
    for op, median in results["median_ms"].items():  # type: ignore[attr-defined]
        print(f"{op:<24}{median:>12}{results['ratio_to_baseline'][op]:>12}")  # type: ignore[index]
    print(f"one snapshot per 2 s refresh: {results['core_share_at_2s_refresh']:.1%} of the server's time")
    out = ROOT / "bench" / "results" / "dashboard_snapshot.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
