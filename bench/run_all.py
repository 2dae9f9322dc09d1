"""Benchmark boundary of the whole project: every bench script in one run, one table of ratios, one JSON file.

    .venv/bin/python bench/run_all.py [--quick] [--only NAME ...] [--record]   (make bench / make bench-quick)

Runs each script below one after the other (they share the machine, never the time), each measuring its own
baseline in its own run, then reads the JSON each one writes to bench/results/ and prints every ratio it holds
— the paired median where the script pairs rounds, else the ratio of medians — with its target and verdict
where the script states one. Writes bench/results/summary.json with the date, the machine and every script's
exit status and duration, and the same table as Markdown to bench/results/summary.md. A script that fails is
reported and the others still run (exit 1 at the end). ``--record`` also copies the summary, every script's JSON and
the PNGs into bench/results/DATE-full (or -quick), the directory that is committed: the dated record of a run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"

SCRIPTS: dict[str, tuple[str, str]] = {
    # name: (script, JSON it writes)
    "foundation": ("foundation.py", "foundation.json"),
    "guard": ("guard.py", "guard.json"),
    "audit": ("audit.py", "audit.json"),
    "keys": ("keys.py", "keys.json"),
    "startup": ("startup.py", "startup.json"),
    "stdio": ("stdio_tools.py", "stdio_tools.json"),
    "channels_read": ("channels_read.py", "channels_read.json"),
    "waits": ("waits.py", "waits.json"),
    "work": ("work.py", "work.json"),
    "work_get": ("work_get.py", "work_get.json"),
    "resend": ("resend.py", "resend.json"),
    "reservations": ("reservations.py", "reservations.json"),
    "fleet": ("fleet.py", "fleet.json"),
    "http": ("http_tools.py", "http.json"),
    "grpc": ("grpc_tools.py", "grpc.json"),
    "grpc_pinned": ("grpc_pinned.py", "grpc_pinned.json"),
    "observe": ("observe_overhead.py", "observe_overhead.json"),
    "ops": ("ops_tools.py", "ops_tools.json"),
    "dashboard": ("dashboard_snapshot.py", "dashboard_snapshot.json"),
    "roaming": ("roaming.py", "roaming.json"),
    "peers": ("peers.py", "peers.json"),
    "peers_http": ("peers_http.py", "peers_http.json"),
    "soak": ("soak.py", "soak.json"),
    "scale": ("scale.py", "scale.json"),
}
QUICK_FLAG = {
    "audit": ["--records", "300", "--rounds", "2", "--kills", "1"],
    "keys": ["--calls", "300", "--rounds", "2", "--revocations", "10"],
}
"""Scripts whose quick form is spelled differently."""


def machine() -> dict[str, Any]:
    cpus = os.cpu_count()
    try:
        mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem = "MemTotal: unknown"
    try:
        cpu = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = "model name: unknown"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": cpus,
        "cpu": cpu.split(":", 1)[1].strip(),
        "memory": mem.split(":", 1)[1].strip(),
        "load_at_start": load,
    }


LABEL_KEYS = ("measure", "name", "label", "variant", "tool", "case", "mode", "load")


def ratios(node: Any, path: str = "") -> list[dict[str, Any]]:
    """Every ratio a script's JSON holds: dicts with ``paired`` or ``ratio`` (and maybe ``target``/``met``),
    labelled by the row they belong to."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        label = " ".join(str(node[k]) for k in LABEL_KEYS if node.get(k) not in (None, "")) or path
        value = node.get("paired") if node.get("paired") is not None else node.get("ratio")
        if isinstance(value, int | float) and not isinstance(value, bool):
            found.append(
                {
                    "where": label,
                    "ratio": float(value),
                    "target": node.get("target"),
                    "met": node.get("met"),
                    "baseline": node.get("baseline") or node.get("short"),
                }
            )
        for key, child in node.items():
            found += ratios(child, label if key == "vs" else f"{path}/{key}".strip("/"))
    elif isinstance(node, list):
        for child in node:
            found += ratios(child, path)
    return found


def verdict(r: dict[str, Any]) -> str:
    target = r["target"]
    if target is None:
        return ""
    wanted = target if isinstance(target, str) else f">= {target}x"
    return f"{wanted} {'ok' if r['met'] else 'MISSED'}"


def run(name: str, quick: bool) -> dict[str, Any]:
    script, out = SCRIPTS[name]
    argv = [sys.executable, str(BENCH / script)]
    if quick:
        argv += QUICK_FLAG.get(name, ["--quick"])
    log = RESULTS / f"{name}.log"
    started = time.monotonic()
    print(f"== {name}: {' '.join(argv[1:])} (log: {log.relative_to(BENCH.parent)})", flush=True)
    with log.open("wb") as sink:
        code = subprocess.run(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=BENCH.parent, check=False).returncode
    elapsed = time.monotonic() - started
    result: dict[str, Any] = {"script": script, "exit": code, "seconds": round(elapsed, 1), "ratios": []}
    data = RESULTS / out
    if code == 0 and data.exists() and data.stat().st_mtime >= time.time() - elapsed - 1:
        result["ratios"] = ratios(json.loads(data.read_text()))
    print(f"   exit {code} in {elapsed:.0f} s, {len(result['ratios'])} ratios", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every script's quick form (minutes, not tens)")
    parser.add_argument("--only", nargs="*", choices=sorted(SCRIPTS), help="these scripts only")
    parser.add_argument("--record", action="store_true", help="also copy the results to bench/results/DATE-FORM/")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "benches": {},
    }
    for name in args.only or list(SCRIPTS):
        summary["benches"][name] = run(name, args.quick)
    summary["load_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / "summary.md").write_text(markdown(summary))
    print(f"\n{'bench':<14} {'what':<78} {'ratio':>7} {'target':>16}")
    failed = []
    for name, bench in summary["benches"].items():
        if bench["exit"] != 0:
            failed.append(name)
            print(f"{name:<14} FAILED (exit {bench['exit']}; see bench/results/{name}.log)")
        for r in bench["ratios"]:
            print(f"{name:<14} {what_of(r)[:78]:<78} {r['ratio']:6.2f}x {verdict(r):>16}")
    print(f"\nwrote {RESULTS / 'summary.json'} and summary.md ({'quick' if args.quick else 'full'} run)")
    if args.record:
        print(f"recorded in {record(summary)}")
    if failed:
        sys.exit(1)


def what_of(r: dict[str, Any]) -> str:
    return f"{r['where']} vs {r['baseline']}" if r["baseline"] else str(r["where"])


def markdown(summary: dict[str, Any]) -> str:
    """The table of one run as Markdown, headed by its date, form and machine."""
    m = summary["machine"]
    lines = [
        f"# Benchmarks, {summary['date']} ({'quick' if summary['quick'] else 'full'} run)",
        "",
        f"Machine: {m['cpus']} CPUs ({m.get('cpu', '?')}), {m['memory']} memory, {m['platform']}, "
        f"Python {m['python']}; load average at start {m['load_at_start']}, at end {summary.get('load_at_end')}.",
        "",
        "Every ratio is against a baseline measured in the same run (medians; paired where the script "
        "pairs rounds). Scripts and their JSON are in `bench/`; `make bench` repeats this run.",
        "",
        "| bench | what | ratio | target |",
        "|---|---|---:|---|",
    ]
    for name, bench in summary["benches"].items():
        if bench["exit"] != 0:
            lines.append(f"| {name} | FAILED (exit {bench['exit']}) | | |")
        for r in bench["ratios"]:
            lines.append(f"| {name} | {what_of(r).replace('|', '/')} | {r['ratio']:.2f}x | {verdict(r)} |")
    lines += ["", "| bench | seconds | exit |", "|---|---:|---:|"]
    lines += [f"| {name} | {b['seconds']} | {b['exit']} |" for name, b in summary["benches"].items()]
    return "\n".join(lines) + "\n"


def record(summary: dict[str, Any]) -> Path:
    """Copy this run's summary, JSON and PNGs into bench/results/DATE-FORM/ (the committed record)."""
    target = RESULTS / f"{summary['date'][:10]}-{'quick' if summary['quick'] else 'full'}"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("summary.json", "summary.md", *(out for _, out in SCRIPTS.values())):
        if (RESULTS / name).exists():
            shutil.copy2(RESULTS / name, target / name)
    for png in RESULTS.glob("*.png"):
        shutil.copy2(png, target / png.name)
    return target


if __name__ == "__main__":
    main()
