"""`nats-mcp policy check` as a user runs it: exit 0 with a summary for a usable policy, 2 and the reason if not."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.env import isolated_env, nats_mcp_exe

GOOD = """
version: 1
roles:
  agent: {tools: ["channels_*", "work_claim"], namespaces: ["*"], capabilities: {claim: ["python"]}}
principals:
  - {subject: "ci-*", roles: [agent]}
"""


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nats_mcp_exe(), "policy", "check", *args],
        env=isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_valid_policy_and_what_a_principal_may_call(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(GOOD)
    done = run(tmp_path, str(policy), "--subject", "ci-7", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["valid"] and report["roles"] == ["agent"]
    assert set(report["tools"]) == {"channels_list", "channels_send", "channels_read", "channels_status", "work_claim"}
    stranger = json.loads(run(tmp_path, str(policy), "--subject", "someone", "--json").stdout)
    assert stranger["tools"] == []  # default deny


def test_invalid_policies_exit_2_with_the_reason(tmp_path: Path) -> None:
    cases = {
        "typo.yaml": ("roles: {a: {tool: ['*']}}", "roles.a.tool"),
        "unknown-role.yaml": ("roles: {a: {tools: ['*']}}\ngroups: {g: [admin]}", "unknown role"),
        "yaml.yaml": ("roles: [", "not valid YAML"),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        done = run(tmp_path, str(path))
        assert done.returncode == 2 and expected in done.stderr, (name, done.stderr)
    missing = run(tmp_path, str(tmp_path / "absent.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_rules_matching_across_providers_or_certificate_sources_are_warned_about(tmp_path: Path) -> None:
    # issue 19 #3: a bare subject matches it from every provider; an mtls subject without a source prefix names no
    # certificate (non-SPIFFE identities are dns:, cn:, uri:); a SPIFFE rule is fine as it was
    policy = tmp_path / "policy.yaml"
    policy.write_text("""
version: 1
roles: {agent: {tools: ["*"]}}
principals:
  - {method: mtls, subject: "spiffe://example.org/agent/*", roles: [agent]}
  - {subject: "alice", roles: [agent]}
  - {method: mtls, subject: "agent-7.example.org", roles: [agent]}
""")
    done = run(tmp_path, str(policy))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2, done.stderr
    assert warnings[0].startswith("warning: principals[1]: matches subjects of every provider")
    assert warnings[1].startswith("warning: principals[2]: subject 'agent-7.example.org' matches no certificate")
    report = json.loads(run(tmp_path, str(policy), "--json").stdout)
    assert [w.split(":")[0] for w in report["warnings"]] == ["principals[1]", "principals[2]"]
