"""Unit tests of how settings become a connection plan (pure logic; the real servers are in integration/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nats_mcp.bus.connection import backoff_delay
from nats_mcp.bus.connplan import plan_connection
from nats_mcp.bus.errors import NatsConfigError
from nats_mcp.config.loader import load_settings
from nats_mcp.config.settings import Settings


def settings(tmp_path: Path, **environ: str) -> Settings:
    return load_settings(environ={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), **environ}).settings


def test_url_credentials_are_taken_out_of_the_url_and_percent_decoded(tmp_path: Path) -> None:
    plan = plan_connection(settings(tmp_path, NATS_URL="nats://al%40ce:p%2Bss@h1:4222,nats://al%40ce:p%2Bss@h2:4223"))
    assert plan.servers == ["nats://h1:4222", "nats://h2:4223"]
    assert (plan.options["user"], plan.options["password"], plan.method) == ("al@ce", "p+ss", "user/password (URL)")
    assert "p+ss" not in repr(plan) and plan.scrub("x p+ss y") == "x *** y"


def test_token_in_url(tmp_path: Path) -> None:
    plan = plan_connection(settings(tmp_path, NATS_URL="nats://s3cr3t-tok@h:4222"))
    assert plan.options["token"] == "s3cr3t-tok" and plan.method == "token (URL)"
    assert plan.servers == ["nats://h:4222"]


def test_warp_mixed_user_in_url_password_in_env(tmp_path: Path) -> None:
    plan = plan_connection(settings(tmp_path, NATS_URL="nats://bob@h:4222", NATS_PASS="pw"))
    assert (plan.options["user"], plan.options["password"]) == ("bob", "pw")


def test_url_credentials_win_over_env_user(tmp_path: Path) -> None:
    plan = plan_connection(settings(tmp_path, NATS_URL="nats://a:b@h:1", NATS_USER="x", NATS_PASS="y"))
    assert (plan.options["user"], plan.options["password"]) == ("a", "b")


def test_each_explicit_method(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.write_text("SUAXXX")
    creds = tmp_path / "user.creds"
    creds.write_text("jwt")
    assert plan_connection(settings(tmp_path, NATS_URL="h:1", NATS_MCP_NATS_TOKEN="t")).method == "token"
    assert plan_connection(settings(tmp_path, NATS_URL="h:1", NATS_MCP_NATS_NKEY_SEED_FILE=str(seed))).options[
        "nkeys_seed"
    ] == str(seed)
    assert plan_connection(settings(tmp_path, NATS_URL="h:1", NATS_MCP_NATS_CREDS_FILE=str(creds))).options[
        "user_credentials"
    ] == str(creds)
    plan = plan_connection(settings(tmp_path, NATS_URL="h:1", NATS_USER="u", NATS_PASS="p"))
    assert plan.method == "user/password" and plan.servers == ["nats://h:1"]
    assert plan_connection(settings(tmp_path, NATS_URL="h:1")).method == "none"


def test_unreadable_credential_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(NatsConfigError, match="NKey seed file"):
        plan_connection(settings(tmp_path, NATS_URL="h:1", NATS_MCP_NATS_NKEY_SEED_FILE=str(tmp_path / "none")))


def test_user_without_password_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NatsConfigError, match="without a password"):
        plan_connection(settings(tmp_path, NATS_URL="h:1", NATS_USER="u"))


def test_tls_is_wanted_for_tls_urls_and_any_tls_setting(tmp_path: Path) -> None:
    assert plan_connection(settings(tmp_path, NATS_URL="tls://h:1")).tls
    assert plan_connection(settings(tmp_path, NATS_URL="wss://h:443")).tls
    plan = plan_connection(settings(tmp_path, NATS_URL="nats://h:1", NATS_MCP_NATS_TLS_REQUIRED="true"))
    assert plan.tls and plan.servers == ["tls://h:1"]
    assert plan.options["tls"].minimum_version.name == "TLSv1_2"
    plan = plan_connection(settings(tmp_path, NATS_URL="tls://h:1", NATS_MCP_NATS_TLS_MIN_VERSION="1.3"))
    assert plan.options["tls"].minimum_version.name == "TLSv1_3"
    assert not plan_connection(settings(tmp_path, NATS_URL="nats://h:1")).tls


def test_plaintext_websocket_with_tls_settings_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NatsConfigError, match="wss://"):
        plan_connection(settings(tmp_path, NATS_URL="ws://h:80", NATS_MCP_NATS_TLS_REQUIRED="1"))
    with pytest.raises(NatsConfigError, match="cannot mix"):
        plan_connection(settings(tmp_path, NATS_URL="ws://h:80,nats://h:1"))


def test_different_credentials_on_urls_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NatsConfigError, match="different credentials"):
        plan_connection(settings(tmp_path, NATS_URL="nats://a:b@h:1,nats://a:c@h:2"))


def test_embedded_plan_uses_the_token(tmp_path: Path) -> None:
    plan = plan_connection(settings(tmp_path), embedded_url="nats://127.0.0.1:5", embedded_token="tk")
    assert plan.embedded and plan.options["token"] == "tk" and plan.method == "embedded token"


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    lows = [backoff_delay(n, 0.25, 10, rand=lambda: 0.0) for n in range(8)]
    highs = [backoff_delay(n, 0.25, 10, rand=lambda: 1.0) for n in range(8)]
    assert lows == [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert highs == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff_delay(10_000, 0.25, 10, rand=lambda: 1.0) == 10.0
