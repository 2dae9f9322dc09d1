"""Conformance boundary: the official MCP conformance suite (npm @modelcontextprotocol/conformance) against HTTP serve.

The suite (0.1.16, Node 22, both installed by ``scripts/node22``) tests HTTP servers only and has no option
for request headers: its client connects with a bare URL. So the main run is against an ``--insecure-dev``
server (no authentication, loopback only), and a second run against the authenticated server puts the
bearer token on the suite's requests with a Node preload: a global undici dispatcher, which both the SDK
client's ``fetch`` and the suite's raw ``undici.request`` probes go through.

Many scenarios call the suite's own fixture tools, prompts and resources (``test_simple_text``,
``test_simple_prompt``, ``test://static-text``, ...). The server under test serves them from
``tests/support/conformance_fixtures.py`` (named in ``NATS_MCP_TEST_FIXTURES``, importable only with the
checkout root on ``PYTHONPATH``; see ``nats_mcp.api.fixtures``), through the same transport, guard and audit
as every tool: the policy below grants ``test_*``, and the audit trail holds their calls. Every active
scenario must pass, with no expected failures.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.env import isolated_env
from tests.support.http_process import create_api_key, serve_http
from tests.support.natsserver import NatsServer
from tests.support.node import ROOT, node22

pytestmark = pytest.mark.slow

CONFORMANCE_VERSION = "0.1.16"
SUITE_TIMEOUT_S = 120

ACTIVE_SCENARIOS = 30
"""Scenarios in the suite's active server set (``conformance list --server`` lists 32; two are pending)."""
PENDING = ("json-schema-2020-12", "server-sse-polling")
"""The suite's pending scenarios, run besides the active set: server-sse-polling checks resumption from the event
store (kept in NATS) through its test_reconnection fixture."""
TOLERATED_WARNINGS = {"server-sse-polling": {"server-sse-priming-event", "server-sse-retry-field"}}
"""server-sse-polling speaks 2025-03-26, whose clients predate priming events (an event with an id and empty data):
like the SDK, we prime streams and send ``retry`` from 2025-11-25 on (tests/e2e/test_http_protocol.py checks it),
so the scenario recommends them. Nothing else may warn."""
FIXTURES_MODULE = "tests.support.conformance_fixtures"
POLICY = """
roles:
  agent:
    tools: ["handle_*", "channels_*", "registry_*", "messages_*", "work_*", "test_*", "json_schema_*"]
    namespaces: ["*"]
    channels: {read: ["*"], send: ["*"]}
    capabilities: {broadcast: ["*"], claim: ["*"]}
"""
"""The fixtures are allowed by this policy's ``test_*`` and ``json_schema_*`` grants, as any tool is by its own."""

_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")

# Puts the bearer token on every request the suite makes to the server under test: a global undici dispatcher,
# used by Node's fetch (the SDK client) and by undici's request() (the suite's raw DNS-rebinding probes) alike.
_AUTH_PRELOAD = """\
import { createRequire } from "node:module";
const { Agent, setGlobalDispatcher } = createRequire(process.env.NATS_MCP_CONFORMANCE_SCRIPT)("undici");
const origin = process.env.NATS_MCP_CONFORMANCE_ORIGIN;
const authorization = `Bearer ${process.env.NATS_MCP_CONFORMANCE_TOKEN}`;
function withAuth(headers) {
  if (headers == null) return { authorization };
  if (Array.isArray(headers)) {
    const pair = ["authorization", authorization];
    return Array.isArray(headers[0]) ? [...headers, pair] : [...headers, ...pair];
  }
  if (typeof headers[Symbol.iterator] === "function") return [...headers, ["authorization", authorization]];
  return { ...headers, authorization };
}
setGlobalDispatcher(new Agent().compose((dispatch) => (opts, handler) => {
  const mine = opts.origin != null && new URL(String(opts.origin)).origin === origin;
  return dispatch(mine ? { ...opts, headers: withAuth(opts.headers) } : opts, handler);
}));
"""


@dataclass(frozen=True)
class Conformance:
    node: str
    script: str

    def run(
        self, tmp_path: Path, url: str, out_dir: Path, *args: str, **env: str
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, bool]]:
        """``conformance server --url URL -o OUT [args]``; the exit status and, per scenario, whether it passed."""
        cmd = [self.node, self.script, "server", "--url", url, "-o", str(out_dir), *args]
        env = isolated_env(tmp_path, NO_COLOR="1", FORCE_COLOR="0", **env)
        proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=SUITE_TIMEOUT_S)
        return proc, scenario_results(out_dir)


def scenario_results(out_dir: Path) -> dict[str, bool]:
    """Scenario name → passed (no check with status FAILURE), from the ``checks.json`` the suite writes per scenario."""
    results: dict[str, bool] = {}
    for checks_file in sorted(out_dir.glob("*/checks.json")):
        match = _RESULT_DIR.match(checks_file.parent.name)
        assert match, f"unexpected result directory {checks_file.parent.name}"
        checks = json.loads(checks_file.read_text())
        results[match["scenario"]] = all(check["status"] != "FAILURE" for check in checks)
    return results


def failure_report(out_dir: Path, names: set[str]) -> str:
    """The failed checks of these scenarios (id, message, details) for an assertion message."""
    lines = []
    for checks_file in sorted(out_dir.glob("*/checks.json")):
        match = _RESULT_DIR.match(checks_file.parent.name)
        if match and match["scenario"] in names:
            for check in json.loads(checks_file.read_text()):
                if check["status"] == "FAILURE":
                    detail = json.dumps(check.get("details"))[:400]
                    lines.append(f"{match['scenario']}: {check['id']}: {check.get('errorMessage')} {detail}")
    return "\n".join(lines)


def fixtures_env(tmp_path: Path) -> dict[str, str]:
    """The fixtures mode (checkout root on the path, the module named), the policy granting them, an audit file."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return {
        "PYTHONPATH": str(ROOT),
        "NATS_MCP_TEST_FIXTURES": FIXTURES_MODULE,
        "NATS_MCP_SECURITY_POLICY_FILE": str(policy),
        "NATS_MCP_SECURITY_AUDIT_FILE": str(tmp_path / "audit.jsonl"),
    }


def audited_fixture_calls(tmp_path: Path) -> set[tuple[str, str]]:
    """(name, outcome) of the audit records of fixture tools, prompts and resources."""
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    return {(r["tool"], r["outcome"]) for r in records if str(r.get("tool", "")).startswith("test_")}


@pytest.fixture(scope="module")
def conformance() -> Conformance:
    """Node 22 + the conformance suite, installed on first use (fails, never skips, if that is impossible)."""
    found = Conformance(node=node22(), script=node22("--conformance"))
    version = subprocess.run([found.node, found.script, "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == CONFORMANCE_VERSION, version
    return found


def check_suite_run(proc: subprocess.CompletedProcess[str], results: dict[str, bool], out_dir: Path) -> None:
    """Every active scenario ran and passed, and the suite printed no warning."""
    failed = {name for name, passed in results.items() if not passed}
    summary = proc.stdout[proc.stdout.rfind("=== SUMMARY ===") :]
    detail = f"failures: {sorted(failed)}\n{failure_report(out_dir, failed)}\n{summary}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"conformance exited {proc.returncode}\n{detail}"
    assert not failed, detail
    assert len(results) == ACTIVE_SCENARIOS, f"ran {sorted(results)}"
    warned = checks_with_status(out_dir, "WARNING")
    assert not warned, f"warnings: {warned}"


def checks_with_status(out_dir: Path, status: str) -> list[str]:
    """``scenario: check id: message`` of every check with this status."""
    found = []
    for checks_file in sorted(out_dir.glob("*/checks.json")):
        for check in json.loads(checks_file.read_text()):
            if check["status"] == status:
                found.append(f"{checks_file.parent.name}: {check['id']}: {check.get('errorMessage')}")
    return found


def test_suite_against_insecure_dev_server(tmp_path: Path, nats_server: NatsServer, conformance: Conformance) -> None:
    """The whole active suite, fixtures served by our stack: exit 0, all 30 active scenarios ran and passed."""
    out_dir = tmp_path / "results"
    with serve_http(tmp_path, nats_server.url, "--insecure-dev", **fixtures_env(tmp_path)) as server:
        started = time.monotonic()
        proc, results = conformance.run(tmp_path, server.url, out_dir)
        elapsed = time.monotonic() - started
        check_suite_run(proc, results, out_dir)
        # The pending scenarios (not in the active set): our stack passes them too, without a warning.
        for scenario in PENDING:
            out = tmp_path / f"pending-{scenario}"
            pending, pending_results = conformance.run(tmp_path, server.url, out, "--scenario", scenario)
            assert pending.returncode == 0 and pending_results == {scenario: True}, pending.stdout[-3000:]
            warned = checks_with_status(out, "WARNING")
            tolerated = TOLERATED_WARNINGS.get(scenario, set())
            assert [w for w in warned if w.split(": ")[1] not in tolerated] == [], warned
    # through the guard and into the audit trail, like any tool
    calls = audited_fixture_calls(tmp_path)
    assert {
        ("test_simple_text", "ok"),
        ("test_sampling", "ok"),
        ("test_simple_prompt", "ok"),
        ("test_resources", "ok"),
        ("test_prompt_with_arguments", "ok"),
    } <= calls, calls
    assert ("test_error_handling", "ok") not in calls, calls
    print(f"conformance (insecure dev): {sum(results.values())}/{len(results)} passed in {elapsed:.1f} s")


def test_suite_against_authenticated_server(tmp_path: Path, nats_server: NatsServer, conformance: Conformance) -> None:
    """The same suite through API-key authentication (token added by the dispatcher preload); without it, 401."""
    key = create_api_key(tmp_path, nats_server.url, "conformance")
    preload = tmp_path / "bearer.mjs"
    preload.write_text(_AUTH_PRELOAD)
    with serve_http(tmp_path, nats_server.url, **fixtures_env(tmp_path)) as server:
        origin = server.url.removesuffix("/mcp")
        denied, denied_results = conformance.run(
            tmp_path, server.url, tmp_path / "denied", "--scenario", "server-initialize"
        )
        assert denied.returncode == 1 and denied_results == {"server-initialize": False}, denied.stdout
        assert "invalid_token" in failure_report(tmp_path / "denied", {"server-initialize"}), denied.stdout

        out_dir = tmp_path / "results"
        started = time.monotonic()
        proc, results = conformance.run(
            tmp_path,
            server.url,
            out_dir,
            NODE_OPTIONS=f"--import={preload.as_uri()}",
            NATS_MCP_CONFORMANCE_SCRIPT=conformance.script,
            NATS_MCP_CONFORMANCE_ORIGIN=origin,
            NATS_MCP_CONFORMANCE_TOKEN=key,
        )
        elapsed = time.monotonic() - started
        check_suite_run(proc, results, out_dir)
    print(f"conformance (API key): {sum(results.values())}/{len(results)} passed in {elapsed:.1f} s")


def listed_tools(out_dir: Path) -> list[str]:
    """The tool names the ``tools-list`` scenario saw."""
    (checks_file,) = out_dir.glob("server-tools-list-*/checks.json")
    (check,) = json.loads(checks_file.read_text())
    return list(check["details"]["tools"])


def test_a_normal_serve_with_the_same_env_serves_no_fixtures(
    tmp_path: Path, nats_server: NatsServer, conformance: Conformance
) -> None:
    """The same environment and policy without the checkout on the import path (an installed package's case):
    the fixtures module is refused with a warning, and no test_* tool, prompt or resource is served."""
    env = fixtures_env(tmp_path)
    del env["PYTHONPATH"]
    out_dir = tmp_path / "results"
    with serve_http(tmp_path, nats_server.url, "--insecure-dev", **env) as server:
        _proc, results = conformance.run(tmp_path, server.url, out_dir)
        log = server.log_text()
    assert "NATS_MCP_TEST_FIXTURES=tests.support.conformance_fixtures ignored" in log, log
    assert "serving the test fixtures" not in log, log
    tools = listed_tools(out_dir)
    assert tools and not [name for name in tools if name.startswith("test_")], tools
    for scenario in ("tools-call-simple-text", "resources-read-text", "prompts-get-simple", "completion-complete"):
        assert results[scenario] is False, scenario
    assert "Unknown tool: 'test_simple_text'" in failure_report(out_dir, {"tools-call-simple-text"})
    assert results["tools-list"] and results["server-initialize"]
    calls = audited_fixture_calls(tmp_path)  # probing an unknown name is audited, and nothing ran
    assert ("test_simple_text", "unknown_tool") in calls and not [c for c in calls if c[1] == "ok"], calls
