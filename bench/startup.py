"""Benchmark boundary of start-up: `nats-mcp serve` over stdio to its first tools/list, and each human CLI command.

Medians of paired rounds, because these machines are shared and noisy.

    .venv/bin/python bench/startup.py [--quick] [--rounds N]

a. baselines: ``python -c pass`` (the interpreter alone) and the SDK's low-level echo ``Server`` over stdio
   (bench/echo_server.py), from spawn to the answer of its first ``tools/list``: as is (``import mcp`` runs the
   whole SDK's ``__init__``) and lean (the same script with cli/deferred.py's deferral, as `nats-mcp` runs: the
   floor for any server on this SDK's low-level ``Server``);
b. `nats-mcp serve` over stdio (NATS_URL set to a running nats-server) from spawn through the SDK client's
   handshake (``server/discover`` on 2026-07-28) to the answer of its first ``tools/list``: against both echoes,
   and against the target of issue 22, 1.5x Warp's 263 ms (<= 394 ms). Warm: the start-up cache has this
   configuration's entry (every start after the first; transports/stdio_front.py answers); cold: it has none
   (a fresh cache directory each round: the SDK answers, and the process records the entry);
c. each human CLI command, spawn to exit (those that talk to NATS make small round trips on an empty namespace),
   against ``python -c pass`` and the same 394 ms target;
d. the import profile of a stdio serve session that ends at its first ``tools/list`` (``-X importtime``): the top
   15 packages by their modules' own import time, and the top 15 modules by cumulative time.

``--against DIR`` also measures another source tree in the same rounds (PYTHONPATH=DIR for its processes): serve
and every command, with the paired ratio of this tree to that one. A before/after in one run:
``git archive main src | tar -x -C /tmp/main && .venv/bin/python bench/startup.py --against /tmp/main/src``.

Each round runs every measure once, in an order that rotates from round to round, so drift on the machine hits all
of them. Prints a table and writes bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mcp import Client, StdioServerParameters, stdio_client  # noqa: E402
from tests.support.env import isolated_env, nats_mcp_exe  # noqa: E402
from tests.support.natsserver import NatsServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ECHO_SERVER = ROOT / "bench" / "echo_server.py"
NAMESPACE = "bench-startup"
WARP_MS = 263.0
"""Warp's start-up to first tools/list, measured side by side in issue 22."""
TARGET_MS = 1.5 * WARP_MS
"""Issue 22: start-up within 1.5x Warp's; each human CLI command that needs no NATS round trip of size too."""
TOP = 15
POLICY = ROOT / "docs" / "examples" / "nats-ops-policy.yaml"

INTERPRETER = "python -c pass"
COLD = "serve cold"
AT_OTHER = " @against"
CPU = " cpu"
DEFERRED = ROOT / "src" / "nats_mcp" / "cli" / "deferred.py"
LEAN_ECHO = (
    "import runpy, sys; runpy.run_path(sys.argv[1])['defer_packages'](); "
    "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)
"""bench/echo_server.py as `nats-mcp` runs: the SDK's and aiohttp's package __init__ deferred."""
CLI: dict[str, list[str]] = {
    "--help": ["--help"],
    "--version": ["--version"],
    "config show": ["config", "show"],
    "policy check": ["policy", "check", "{policy}"],
    "nats-permissions": ["nats-permissions", "--role", "agent"],
    "nats status": ["nats", "status"],
    "agents list": ["agents", "list"],
    "channels read": ["channels", "read", "roadmap", "--limit", "5"],
    "work list": ["work", "list", "bench"],
    "dlq list": ["dlq", "list"],
    "work get": ["work", "get", "{item}"],
    "reservations list": ["reservations", "list"],
    "audit tail": ["audit", "tail", "-n", "5"],
    "audit verify": ["audit", "verify"],
    "keys list": ["keys", "list"],
    "doctor": ["doctor"],
}
"""Every human command that finishes by itself (serve, dashboard, top and --follow run until stopped); those from
``agents list`` on talk to NATS. ``work get`` reads the one item submitted before the rounds (to a queue of its
own, so ``work list bench`` stays empty); ``audit verify`` checks the audit stream those commands write to (a few
hundred records by the last round)."""
ITEM_QUEUE = "bench-get"


@dataclass
class Row:
    measure: str
    median: float
    paired: float | None
    """The median over rounds of this measure's time / the baseline's in the same round."""
    min: float
    max: float
    baseline: str | None = None
    baseline_median: float | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    exit: int | None = None
    cpu_ms: float | None = None
    """Median CPU time (user + system) of the process measured: steadier than wall time on a loaded machine."""
    baseline_cpu_ms: float | None = None


def ms_row(measure: str, samples: dict[str, list[float]], key: str, baseline: str | None, exit_code: int | None) -> Row:
    """Median, min, max; the ratio to the baseline (paired by round, and of medians); the absolute verdict."""
    values = samples[key]
    med = statistics.median(values)
    out = Row(measure, med, None, min(values), max(values), exit=exit_code)
    out.cpu_ms = statistics.median(samples[f"{key}{CPU}"])
    if baseline is not None:
        base = samples[baseline]
        out.baseline, out.baseline_median = baseline, statistics.median(base)
        out.ratio = med / out.baseline_median
        out.paired = statistics.median(v / b for v, b in zip(values, base, strict=True))
        out.baseline_cpu_ms = statistics.median(samples[f"{baseline}{CPU}"])
    out.target, out.met = f"<= {TARGET_MS:.0f} ms", med <= TARGET_MS
    return out


async def to_first_tools_list(argv: list[str], env: dict[str, str], cwd: Path, errlog: Path) -> tuple[float, int]:
    """Milliseconds from spawning a stdio MCP server to the answer of its first tools/list (after initialize), and
    how many tools it listed."""
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=str(cwd))
    with errlog.open("a") as log:
        start = time.perf_counter()
        async with Client(stdio_client(params, errlog=log)) as client:
            tools = await client.list_tools()
            elapsed = (time.perf_counter() - start) * 1e3
    return elapsed, len(tools.tools)


def children_cpu_ms() -> float:
    """CPU time of every child process waited for so far (each measure's process is waited for before the next)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1e3


def wall_ms(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, str]:
    """Milliseconds from spawn to exit, the exit code and the start of stderr."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False, timeout=60)
    return (time.perf_counter() - start) * 1e3, done.returncode, done.stderr.decode(errors="replace")[:300]


def submit_item(exe: str, env: dict[str, str], cwd: Path) -> str:
    """The id of a work item submitted for ``work get`` to read."""
    argv = [exe, "work", "submit", ITEM_QUEUE, "an item for `work get`"]
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.strip()


IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def import_profile(text: str) -> dict[str, Any]:
    """``-X importtime`` lines: total, the top packages by own time and the top modules by cumulative time (ms)."""
    own: dict[str, float] = defaultdict(float)
    modules: list[tuple[str, float, float]] = []
    for line in text.splitlines():
        m = IMPORT_LINE.match(line)
        if m is None:
            continue
        self_us, cumulative_us, name = int(m.group(1)), int(m.group(2)), m.group(4)
        own[name.split(".")[0]] += self_us / 1e3
        modules.append((name, self_us / 1e3, cumulative_us / 1e3))
    return {
        "modules": len(modules),
        "total_ms": round(sum(own.values()), 1),
        "packages": [{"package": p, "own_ms": round(t, 1)} for p, t in sorted(own.items(), key=lambda kv: -kv[1])][
            :TOP
        ],
        "cumulative": [
            {"module": n, "own_ms": round(s, 1), "cumulative_ms": round(c, 1)}
            for n, s, c in sorted(modules, key=lambda m: -m[2])[:TOP]
        ],
    }


async def run(rounds: int, against: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp, NatsServer(Path(tmp) / "nats") as nats_server:
        base = Path(tmp)
        project = base / "project"
        project.mkdir()
        env = isolated_env(project, NATS_URL=nats_server.url, NATS_MCP_NAMESPACE=NAMESPACE)
        exe = nats_mcp_exe()
        other_env = {**env, "PYTHONPATH": str(against)} if against is not None else env
        stdio = {
            "serve": [exe, "serve"],
            COLD: [exe, "serve"],
            "echo": [sys.executable, str(ECHO_SERVER)],
            "lean echo": [sys.executable, "-c", LEAN_ECHO, str(DEFERRED), str(ECHO_SERVER)],
        }
        pass_argv = [sys.executable, "-c", "pass"]
        fill = {"{policy}": str(POLICY), "{item}": submit_item(exe, env, project)}
        cli = {name: [exe, *(fill.get(a, a) for a in args)] for name, args in CLI.items()}
        samples: dict[str, list[float]] = defaultdict(list)
        exits: dict[str, int] = {}
        tools: dict[str, int] = {}
        others = [f"{name}{AT_OTHER}" for name in ("serve", *cli)] if against is not None else []
        for name, argv in stdio.items():  # warm the page cache; not counted
            await to_first_tools_list(argv, env, project, base / f"{name}.log")
        measures = [INTERPRETER, *stdio, *cli, *others]
        for r in range(rounds):
            shift = r % len(measures)
            for measure in measures[shift:] + measures[:shift]:
                name, on_other = measure.removesuffix(AT_OTHER), measure.endswith(AT_OTHER)
                use = other_env if on_other else env
                if name == COLD:  # a cache directory of its own: no entry for this configuration yet
                    use = {**use, "XDG_CACHE_HOME": str(base / f"cold-cache-{r}")}
                cpu = children_cpu_ms()
                if measure == INTERPRETER:
                    ms, exits[measure], _ = wall_ms(pass_argv, env, project)
                elif name in stdio:
                    ms, tools[measure] = await to_first_tools_list(stdio[name], use, project, base / f"{name}.log")
                else:
                    ms, exits[measure], stderr = wall_ms(cli[name], use, project)
                    if exits[measure] != 0 and r == 0:
                        print(f"note: `nats-mcp {' '.join(CLI[name])}` exited {exits[measure]}: {stderr}")
                samples[measure].append(ms)
                samples[f"{measure}{CPU}"].append(children_cpu_ms() - cpu)
            print(
                f"round {r + 1}/{rounds}: serve {samples['serve'][-1]:.0f} ms, cold {samples[COLD][-1]:.0f} ms, "
                f"echo {samples['echo'][-1]:.0f} ms, "
                f"lean echo {samples['lean echo'][-1]:.0f} ms",
                flush=True,
            )
        profile_log = base / "importtime.log"
        await to_first_tools_list(
            [sys.executable, "-X", "importtime", "-m", "nats_mcp.cli.main", "serve"], env, project, profile_log
        )
        profile = import_profile(profile_log.read_text(errors="replace"))
    rows = [
        ms_row("python -c pass (interpreter start-up)", samples, INTERPRETER, None, exits[INTERPRETER]),
        ms_row("SDK echo Server, stdio: spawn -> tools/list", samples, "echo", INTERPRETER, None),
        ms_row("SDK echo Server, lean (deferred __init__)", samples, "lean echo", INTERPRETER, None),
        ms_row("nats-mcp serve, stdio: spawn -> tools/list", samples, "serve", "echo", None),
        ms_row("nats-mcp serve vs the lean echo", samples, "serve", "lean echo", None),
        ms_row("nats-mcp serve cold (no cache entry) -> tools/list", samples, COLD, "echo", None),
        ms_row("nats-mcp serve cold vs the lean echo", samples, COLD, "lean echo", None),
        *(ms_row(f"nats-mcp {name}", samples, name, INTERPRETER, exits[name]) for name in cli),
    ]
    if against is not None:  # the ratio this tree / that one, paired by round; the verdict is this tree's
        rows += [
            ms_row(f"nats-mcp {name}: this tree vs --against", samples, name, f"{name}{AT_OTHER}", None)
            for name in ("serve", *cli)
        ]
        rows.append(ms_row("nats-mcp serve cold: this tree vs --against", samples, COLD, f"serve{AT_OTHER}", None))
    return {"rows": rows, "tools": tools, "import_profile": profile}


def print_report(rows: list[Row], profile: dict[str, Any]) -> None:
    print(f"\nimport profile of `nats-mcp serve` (stdio) to its first tools/list: {profile['modules']} modules, ")
    print(f"{profile['total_ms']:.0f} ms of import time (-X importtime, which slows imports a little)")
    print("top packages by own import time:")
    for p in profile["packages"]:
        print(f"  {p['package']:<28} {p['own_ms']:8.1f} ms")
    print("top modules by cumulative import time:")
    for m in profile["cumulative"]:
        print(f"  {m['module']:<52} {m['cumulative_ms']:8.1f} ms (own {m['own_ms']:.1f})")
    print(f"\n{'measure':<50} {'median':>8} {'min':>8} {'max':>8} {'cpu':>12} {'baseline':>9} {'paired':>7}  target")
    for r in rows:
        base = f"{r.baseline_median:9.1f}" if r.baseline_median is not None else f"{'-':>9}"
        ratio = f"{r.paired:6.2f}x" if r.paired is not None else f"{'':>7}"
        verdict = f"{r.target} {'ok' if r.met else 'MISSED'}"
        note = f" (exit {r.exit})" if r.exit else ""
        cpu = f"{r.cpu_ms:.0f}" if r.cpu_ms is not None else ""
        if r.baseline_cpu_ms is not None:
            cpu += f" ({r.baseline_cpu_ms:.0f})"
        print(f"{r.measure:<50} {r.median:8.1f} {r.min:8.1f} {r.max:8.1f} {cpu:>12} {base} {ratio}  {verdict}{note}")
    print("(ms, lower is better; wall time from spawn; cpu: the median CPU time of the process (the baseline's in")
    print(" brackets), the whole session for the stdio servers; paired: the median over rounds of the ratio to the")
    print(" baseline measured in the same round;")
    print(f" target: 1.5x Warp's {WARP_MS:.0f} ms start-up, issue 22)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 rounds (about a minute), for CI")
    parser.add_argument("--rounds", type=int, help="paired rounds (default 15, or 5 with --quick)")
    parser.add_argument("--against", type=Path, help="also measure this source tree (a src/ directory), paired")
    args = parser.parse_args()
    rounds = args.rounds or (5 if args.quick else 15)
    started = time.perf_counter()
    result = asyncio.run(run(rounds, args.against.resolve() if args.against else None))
    rows: list[Row] = result["rows"]
    print_report(rows, result["import_profile"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "rounds": rounds,
        "quick": args.quick,
        "against": str(args.against) if args.against else None,
        "target_ms": TARGET_MS,
        "warp_ms": WARP_MS,
        "elapsed_s": time.perf_counter() - started,
        "environment": {
            "python": platform.python_version(),
            "mcp": version("mcp"),
            "nats-py": version("nats-py"),
            "machine": platform.machine(),
        },
        "tools_listed": result["tools"],
        "rows": [asdict(r) for r in rows],
        "import_profile": result["import_profile"],
    }
    (RESULTS / "startup.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {RESULTS / 'startup.json'} in {report['elapsed_s']:.1f} s")


if __name__ == "__main__":
    main()
