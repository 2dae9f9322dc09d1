"""`nats-mcp keys` and `nats-mcp token` as a user runs them: a key shown once that then authenticates against the same
NATS, a list without secrets, revocation that bites as soon as the checking process's watch delivers it (the
revoking CLI is another process), a dev token the server verifies, clear failures."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from nats_mcp.security.authn.apikeys import ApiKeys, parse_key
from nats_mcp.security.authn.jwt import JwtVerifier
from nats_mcp.security.errors import AuthenticationError
from tests.support.env import connected, isolated_env, nats_mcp_exe, settings_for
from tests.support.natsserver import NatsServer, wait_for

pytestmark = pytest.mark.slow


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nats_mcp_exe(), *args],
        env=isolated_env(tmp_path, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )


async def test_create_list_revoke(tmp_path: Path, nats_server: NatsServer) -> None:
    url = nats_server.url
    made = cli(
        tmp_path,
        "keys",
        "create",
        "--name",
        "ci-bot",
        "--role",
        "agent",
        "--role",
        "reader",
        "--namespace",
        "proj-a",
        "--expires",
        "30d",
        NATS_URL=url,
    )
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert len(lines) == 1  # the key alone on stdout: KEY=$(nats-mcp keys create ...) works
    key = lines[0]
    parsed = parse_key(key)
    assert parsed is not None
    key_id, secret = parsed
    assert key_id in made.stderr and "not shown again" in made.stderr
    assert secret not in made.stderr

    async with connected(tmp_path, url) as conn:
        keys = ApiKeys(conn)
        principal = await keys.verify(key)
        assert principal.subject == "ci-bot" and principal.roles == {"agent", "reader"}
        assert principal.namespaces == {"proj-a"}

        listed = cli(tmp_path, "keys", "list", "--json", NATS_URL=url)
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert [(r["id"], r["name"], r["status"]) for r in rows] == [(key_id, "ci-bot", "active")]
        assert rows[0]["expires"] is not None
        assert secret not in listed.stdout and "hash" not in listed.stdout and "salt" not in listed.stdout

        table = cli(tmp_path, "keys", "list", NATS_URL=url)
        assert table.returncode == 0 and key_id in table.stdout and secret not in table.stdout

        revoked = cli(tmp_path, "keys", "revoke", key_id, NATS_URL=url)
        assert revoked.returncode == 0, revoked.stderr
        assert f"revoked {key_id}" in revoked.stdout

        async def refused() -> str | None:
            try:
                await keys.verify(key)
            except AuthenticationError as exc:
                return exc.reason
            return None

        assert await wait_for(refused, 10, message="the revocation never reached this process") == "revoked"
        await keys.aclose()

        again = cli(tmp_path, "keys", "revoke", key_id, NATS_URL=url)
        assert again.returncode == 0 and "already revoked" in again.stdout
        rows = json.loads(cli(tmp_path, "keys", "list", "--json", NATS_URL=url).stdout)
        assert rows[0]["status"] == "revoked"


def test_create_json_shows_the_key_once(tmp_path: Path, nats_server: NatsServer) -> None:
    made = cli(tmp_path, "keys", "create", "--name", "svc", "--role", "agent", "--json", NATS_URL=nats_server.url)
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert parse_key(doc["key"]) == (doc["id"], doc["key"][17:])
    assert doc["status"] == "active" and doc["namespaces"] is None and "hash" not in doc


def test_usage_errors_and_failures(tmp_path: Path, nats_server: NatsServer) -> None:
    url = nats_server.url
    bad_ttl = cli(tmp_path, "keys", "create", "--name", "x", "--role", "agent", "--expires", "soon", NATS_URL=url)
    assert bad_ttl.returncode == 2 and "--expires" in bad_ttl.stderr
    bad_name = cli(tmp_path, "keys", "create", "--name", "has space", "--role", "agent", NATS_URL=url)
    assert bad_name.returncode == 2 and "invalid key name" in bad_name.stderr
    no_role = cli(tmp_path, "keys", "create", "--name", "x", NATS_URL=url)
    assert no_role.returncode == 2
    unknown = cli(tmp_path, "keys", "revoke", "0123456789ab", NATS_URL=url)
    assert unknown.returncode == 1 and "no API key" in unknown.stderr
    url_down = url
    nats_server.stop()
    down = cli(tmp_path, "keys", "list", "--timeout", "2", NATS_URL=url_down)
    assert down.returncode == 1 and "NATS" in down.stderr
    assert "Traceback" not in down.stderr


async def test_token_issue_makes_a_dev_token_the_server_accepts(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    issued = cli(
        tmp_path,
        "token",
        "issue",
        "--subject",
        "dev-erin",
        "--role",
        "agent",
        "--namespace",
        "proj-b",
        "--ttl",
        "15m",
        NATS_MCP_EMBEDDED_DATA_DIR=data,
    )
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    assert "development token" in issued.stderr and "dev_tokens" in issued.stderr
    assert token not in issued.stderr

    on = settings_for(tmp_path, NATS_MCP_EMBEDDED_DATA_DIR=data, NATS_MCP_SECURITY_DEV_TOKENS="true")
    principal = await JwtVerifier.from_settings(on).verify(token)
    assert principal.subject == "dev-erin" and principal.groups == {"agent"} and principal.namespaces == {"proj-b"}
    exp = principal.claims["exp"]
    assert isinstance(exp, int)

    off = settings_for(tmp_path, NATS_MCP_EMBEDDED_DATA_DIR=data)
    with pytest.raises(AuthenticationError) as info:
        await JwtVerifier.from_settings(off).verify(token)
    assert info.value.reason == "bad_issuer"

    quiet = cli(
        tmp_path,
        "token",
        "issue",
        "--subject",
        "x",
        NATS_MCP_EMBEDDED_DATA_DIR=data,
        NATS_MCP_SECURITY_DEV_TOKENS="true",
    )
    assert quiet.returncode == 0 and "development token" in quiet.stderr and "does not trust" not in quiet.stderr


def test_token_issue_usage_errors(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    assert (
        cli(tmp_path, "token", "issue", "--subject", "x", "--ttl", "60d", NATS_MCP_EMBEDDED_DATA_DIR=data).returncode
        == 2
    )
    assert (
        cli(tmp_path, "token", "issue", "--subject", "x", "--ttl", "later", NATS_MCP_EMBEDDED_DATA_DIR=data).returncode
        == 2
    )
    bad_ns = cli(tmp_path, "token", "issue", "--subject", "x", "--namespace", "A.B", NATS_MCP_EMBEDDED_DATA_DIR=data)
    assert bad_ns.returncode == 2 and "namespace" in bad_ns.stderr
    assert cli(tmp_path, "token", "issue", NATS_MCP_EMBEDDED_DATA_DIR=data).returncode == 2  # --subject is required
