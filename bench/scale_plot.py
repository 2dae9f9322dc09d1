"""Benchmark boundary of bench/scale.py's picture: its JSON report drawn as one PNG (matplotlib, Agg, no display).

    .venv/bin/python bench/scale_plot.py [bench/results/scale.json [OUT.png]]     (redraw without measuring)

One panel per curve (log x; latency as median with its min..max band, the ratio to the first point written at each
point, the target as a dashed line), concurrent agents as aggregate throughput and as p50/p95 latency, and the
servers' RSS as bars. 16 x 10 inches at 100 dpi: 1600 x 1000 pixels.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
COLORS = {"a": "tab:blue", "b": "tab:orange"}


def _band(ax: Any, points: list[dict[str, Any]], label: str, color: str, target: float | None) -> float:
    xs = [p["x"] for p in points]
    medians = [p["median"] for p in points]
    ax.plot(xs, medians, marker="o", color=color, label=f"{label} (median)")
    ax.fill_between(
        xs, [p["min"] for p in points], [p["max"] for p in points], color=color, alpha=0.15, label=f"{label} (min–max)"
    )
    for p in points[1:]:
        ax.annotate(
            f"{p['vs_first']:.2f}×",
            (p["x"], p["median"]),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=8,
            color=color,
        )
    if target is not None:
        ax.axhline(
            target * medians[0], color=color, linestyle="--", linewidth=1, label=f"{label} target ≤ {target:g}× first"
        )
    return max(medians)


def latency_panel(ax: Any, title: str, series: list[tuple[str, dict[str, Any]]]) -> None:
    top = 0.0
    for (label, curve), color in zip(series, COLORS.values(), strict=False):
        top = max(top, _band(ax, curve["points"], label, color, curve.get("target_vs_first")))
        ax.set_xlabel(curve["x"])
    ax.set_xscale("log")
    ax.set_ylim(0, top * 2.5)  # the band's far outliers are cut off: the medians are what is judged
    ax.set_ylabel("ms per call (band clipped at 2.5× the top median)")
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")


def throughput_panel(ax: Any, http: dict[str, Any], grpc: dict[str, Any]) -> None:
    for (label, curve), color in zip((("HTTP", http), ("gRPC", grpc)), COLORS.values(), strict=True):
        points = curve["points"]
        xs = [p["x"] for p in points]
        ax.plot(xs, [p["median"] for p in points], marker="o", color=color, label=f"{label} calls/s (median)")
        ax.fill_between(xs, [p["min"] for p in points], [p["max"] for p in points], color=color, alpha=0.15)
        for p in points[1:]:
            ax.annotate(
                f"{p['vs_first']:.2f}×",
                (p["x"], p["median"]),
                textcoords="offset points",
                xytext=(0, 7),
                ha="center",
                fontsize=8,
                color=color,
            )
    ax.set_xscale("log")
    ax.set_ylim(0, max(p["max"] for c in (http, grpc) for p in c["points"]) * 1.15)
    ax.set_xlabel("concurrent agents (one session each)")
    ax.set_ylabel("aggregate calls/s (warp_channels_send; band: min–max)")
    ax.set_title("4. concurrent agents: throughput", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")


def concurrency_latency_panel(ax: Any, http: dict[str, Any], grpc: dict[str, Any]) -> None:
    for (label, curve), color in zip((("HTTP", http), ("gRPC", grpc)), COLORS.values(), strict=True):
        points = curve["points"]
        xs = [p["x"] for p in points]
        ax.plot(xs, [p["p50_ms"] for p in points], marker="o", color=color, label=f"{label} p50")
        ax.plot(xs, [p["p95_ms"] for p in points], marker="^", color=color, linestyle="--", label=f"{label} p95")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent agents (one session each)")
    ax.set_ylabel("ms per call")
    ax.set_title("4. concurrent agents: per-call latency", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")


def memory_panel(ax: Any, memory: list[dict[str, Any]]) -> None:
    order = list(dict.fromkeys(m["server"] for m in memory))
    memory = sorted(memory, key=lambda m: order.index(m["server"]))  # stable: each server's figures in order taken
    idle: dict[str, float] = {}
    labels, values, colors = [], [], []
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
    servers: list[str] = []
    for m in memory:
        if m["server"] not in servers:
            servers.append(m["server"])
        idle.setdefault(m["server"], m["mib"])
        labels.append(f"{m['server']}: {m['state']}")
        values.append(m["mib"])
        colors.append(palette[servers.index(m["server"]) % len(palette)])
    ys = list(range(len(values)))[::-1]
    ax.barh(ys, values, color=colors)
    ax.set_yticks(ys, labels, fontsize=8)
    for y, m in zip(ys, memory, strict=True):
        ax.annotate(
            f" {m['mib']:.0f} MiB ({m['mib'] / idle[m['server']]:.2f}×)", (m["mib"], y), va="center", fontsize=8
        )
    ax.set_xlim(0, max(values) * 1.5)
    ax.set_xlabel("RSS, MiB (ratio vs the same server's first figure)")
    ax.set_title("5. server memory (VmRSS)", fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)


def _gib(meminfo: str) -> str:
    """``24684092 kB`` (run_all.machine's, from /proc/meminfo) as ``23.5 GiB``."""
    number, _, unit = meminfo.partition(" ")
    return f"{int(number) / 1024**2:.1f} GiB" if unit == "kB" and number.isdigit() else meminfo


def draw(report: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = report["curves"]
    fig, axes = plt.subplots(2, 3, figsize=(16, 10), dpi=100)
    latency_panel(axes[0][0], "1. channels_read, newest 50, vs history", [("stdio", curves["channels_read"])])
    latency_panel(axes[0][1], "2. registry_discover, first page, vs agents", [("stdio", curves["registry_discover"])])
    latency_panel(
        axes[0][2],
        "3. work claim vs pending items",
        [("WorkService", curves["claim_service"]), ("MCP stdio", curves["claim_mcp"])],
    )
    throughput_panel(axes[1][0], curves["http_agents"], curves["grpc_agents"])
    concurrency_latency_panel(axes[1][1], curves["http_agents"], curves["grpc_agents"])
    memory_panel(axes[1][2], report["memory"])
    m = report["machine"]
    form = "quick form" if report["quick"] else "full form"
    cpu = f" ({m['cpu']})" if m.get("cpu") else ""  # run_all.machine() names the CPU model on newer mains
    fig.suptitle(
        f"nats-mcp-server scale curves ({form}) — {report['date']} — {m['cpus']} CPUs{cpu}, "
        f"{_gib(m['memory'])} memory, Python {m['python']}",
        fontsize=13,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "scale.json"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else source.with_suffix(".png")
    draw(json.loads(source.read_text()), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
