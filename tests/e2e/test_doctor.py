"""`nats-mcp doctor` as a user runs it: a table or JSON, a hint per failure, exit 0 only when all pass."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nats_mcp.core.pins import pins_of_file
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import NatsServer, TlsNatsServer, UserPassNatsServer


def doctor(tmp_path: Path, *args: str, **env: str) -> tuple[int, dict[str, Any], str]:
    exe = nats_mcp_exe()
    proc = subprocess.run(
        [exe, "doctor", "--json", "--timeout", "3", *args],
        env=isolated_env(tmp_path, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stdout + proc.stderr


def by_name(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in report["checks"]}


def test_all_checks_pass_on_a_healthy_server(tmp_path: Path, nats_server: NatsServer) -> None:
    code, report, _ = doctor(tmp_path, NATS_URL=nats_server.url)
    checks = by_name(report)
    assert code == 0 and report["ok"] is True
    assert [c["status"] for c in report["checks"]] == ["pass"] * len(report["checks"])
    assert set(checks) == {
        "settings",
        "target",
        "reachability",
        "authentication",
        "tls",
        "server version",
        "jetstream",
        "clock skew",
    }
    assert "2.1" in checks["server version"]["detail"]


def test_nats_down_fails_with_a_hint(tmp_path: Path, nats_server: NatsServer) -> None:
    url = nats_server.url
    nats_server.stop()
    code, report, _ = doctor(tmp_path, NATS_URL=url)
    checks = by_name(report)
    assert code == 1
    assert checks["reachability"]["status"] == "fail"
    assert "start NATS" in checks["reachability"]["hint"]


def test_wrong_password_names_method_and_never_prints_it(tmp_path: Path, nats_userpass: UserPassNatsServer) -> None:
    code, report, output = doctor(
        tmp_path, NATS_URL=nats_userpass.url, NATS_USER=nats_userpass.user, NATS_PASS="Very-Wrong-Pass"
    )
    checks = by_name(report)
    assert code == 1
    assert checks["authentication"]["status"] == "fail"
    assert "user/password" in checks["authentication"]["detail"]
    assert "Very-Wrong-Pass" not in output and nats_userpass.password not in output


def test_tls_state_is_reported(tmp_path: Path, nats_tls: TlsNatsServer) -> None:
    code, report, _ = doctor(tmp_path, NATS_URL=nats_tls.tls_url, NATS_MCP_NATS_TLS_CA_FILE=str(nats_tls.ca_file))
    assert code == 0
    assert by_name(report)["tls"]["detail"].startswith("TLSv1.")
    # The keys the server's chain presents, to pin (leaf first, then its CA).
    leaf, ca = pins_of_file(nats_tls.server_cert_file)[0], pins_of_file(nats_tls.ca_file)[0]
    pins = by_name(report)["pins"]
    assert pins["status"] == "pass" and "not pinned" in pins["detail"] and f"{leaf}, {ca}" in pins["detail"]
    assert "nats.tls.pins" in pins["hint"]
    code, report, _ = doctor(tmp_path, NATS_URL=nats_tls.url)
    assert code == 1
    assert by_name(report)["tls"]["status"] == "fail"
    assert "tls://" in by_name(report)["tls"]["hint"]


@pytest.mark.slow  # two more doctor runs: 4 s or more
def test_pins_are_shown_matching_or_not(tmp_path: Path, nats_tls: TlsNatsServer) -> None:
    leaf, ca = pins_of_file(nats_tls.server_cert_file)[0], pins_of_file(nats_tls.ca_file)[0]
    tls_env = {"NATS_URL": nats_tls.tls_url, "NATS_MCP_NATS_TLS_CA_FILE": str(nats_tls.ca_file)}
    code, report, _ = doctor(tmp_path, **tls_env, NATS_MCP_NATS_TLS_PINS=ca)
    assert code == 0 and by_name(report)["pins"]["detail"].startswith(f"nats.tls.pins matches {ca}")
    code, report, _ = doctor(tmp_path, **tls_env, NATS_MCP_NATS_TLS_PINS="sha256/" + "D" * 43 + "=")
    assert code == 1 and by_name(report)["tls"]["status"] == "fail"
    assert "nats.tls.pins" in by_name(report)["tls"]["detail"] and leaf in by_name(report)["tls"]["detail"]


def test_jetstream_missing_fails(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "nojs", jetstream=False).start() as server:
        code, report, _ = doctor(tmp_path, NATS_URL=server.url)
    assert code == 1
    assert by_name(report)["jetstream"]["status"] == "fail"
    assert "enable JetStream" in by_name(report)["jetstream"]["hint"]


def test_invalid_setting_is_a_failed_check(tmp_path: Path) -> None:
    code, report, _ = doctor(tmp_path, WORKQUEUE_MAX_ATTEMPTS="zero")
    assert code == 1
    assert report["checks"][0]["name"] == "settings"
    assert "WORKQUEUE_MAX_ATTEMPTS" in report["checks"][0]["detail"]


def test_embedded_not_running(tmp_path: Path) -> None:
    code, report, _ = doctor(tmp_path)
    assert code == 1
    assert by_name(report)["target"]["status"] == "fail"
    assert "nats-mcp nats start" in by_name(report)["target"]["hint"]


def test_table_output(tmp_path: Path, nats_server: NatsServer) -> None:
    exe = nats_mcp_exe()
    proc = subprocess.run(
        [exe, "doctor"],
        env=isolated_env(tmp_path, NATS_URL=nats_server.url, COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0
    assert "all checks passed" in proc.stdout and "jetstream" in proc.stdout
