"""Boundary of the dashboard's login and data endpoints over real HTTP: sessions, refusals and the audit trail."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.dashboard import POLICY, WRONG_KEY, Deployment, deployment
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.http_server import (
    api_key,
    dev_jwt,
    http_client,
    launch,
    mcp_client,
    post_init,
    run_cli,
)
from tests.support.natsserver import NatsServer, _pdeathsig_preexec, wait_for
from tests.support.stdio import ok

pytestmark = pytest.mark.slow

COOKIE = "nmcp_dashboard"


def client(d: Deployment, origin: str | None = None, session: str | None = None) -> httpx2.AsyncClient:
    """A client as a browser on the dashboard's own origin sends requests (Origin on every request)."""
    return httpx2.AsyncClient(
        headers={"origin": origin or d.server.base},
        follow_redirects=False,
        trust_env=False,
        timeout=30,
        cookies={COOKIE: session} if session else None,
    )


async def login(hc: httpx2.AsyncClient, d: Deployment, credential: str) -> httpx2.Response:
    return await hc.post(f"{d.dashboard}/login", data={"credential": credential})


def session_cookie(response: httpx2.Response) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{COOKIE}="):
            return header
    return None


async def test_login_sessions_and_every_refusal(tmp_path: Path, nats_server: NatsServer) -> None:
    async with (
        deployment(tmp_path, nats_server, "dash-http", NATS_MCP_SECURITY_LOCKOUT_MAX_FAILURES="3") as d,
        client(d) as hc,
    ):
        # Unauthenticated: the page redirects to the login form, the data endpoint answers 401.
        page = await hc.get(d.dashboard)
        assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
        assert (await hc.get(f"{d.dashboard}/api/snapshot")).status_code == 401
        form = await hc.get(f"{d.dashboard}/login")
        assert form.status_code == 200 and 'name="credential"' in form.text
        csp = form.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
        # A forged cookie is refused like none.
        async with client(d, session="x" * 43) as forged:
            assert (await forged.get(f"{d.dashboard}/api/snapshot")).status_code == 401
            assert (await forged.get(d.dashboard)).status_code == 303

        # A wrong key: back to the form with a generic message, no cookie, and an auth_failure audited.
        wrong = await login(hc, d, WRONG_KEY)
        assert wrong.status_code == 303 and wrong.headers["location"].endswith("?e=refused")
        assert session_cookie(wrong) is None
        # A valid key without the dashboard admin operation: refused as well, audited as denied.
        agent = await login(hc, d, d.agent_key)
        assert agent.status_code == 303 and agent.headers["location"].endswith("?e=refused")
        assert session_cookie(agent) is None
        # A login POST from another origin (CSRF) is refused before the credential is looked at.
        async with client(d, "http://evil.example") as evil:
            assert (await evil.post(f"{d.dashboard}/login", data={"credential": d.admin_key})).status_code == 403
        # Another Host name (DNS rebinding) is refused.
        assert (await hc.get(f"{d.dashboard}/login", headers={"host": "evil.example"})).status_code == 421

        # The admin key: a session cookie with a random id only, HttpOnly, SameSite=Strict, Path=/dashboard.
        ok = await login(hc, d, d.admin_key)
        assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"
        cookie = session_cookie(ok)
        assert cookie is not None
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/dashboard"} <= attributes
        assert "secure" not in attributes  # plain HTTP on loopback
        sid = cookie.split(";")[0].split("=", 1)[1]
        assert d.admin_key not in cookie and len(sid) >= 40
        page = await hc.get(d.dashboard)
        assert page.status_code == 200 and 'id="agents"' in page.text and d.admin_key not in page.text
        snap = await hc.get(f"{d.dashboard}/api/snapshot")
        assert snap.status_code == 200 and snap.headers["cache-control"] == "no-store"
        data = snap.json()
        assert data["namespace"] == "dash-http" and data["nats"]["connected"] is True
        assert data["session"]["principal"].startswith("ops") or "ops" in data["session"]["principal"]
        assert d.admin_key not in snap.text

        # Logout needs the session's CSRF token; then the session is gone.
        assert (await hc.post(f"{d.dashboard}/logout")).status_code == 403
        async with client(d, "http://evil.example", session=sid) as evil:  # cross-origin logout: refused
            assert (await evil.post(f"{d.dashboard}/logout")).status_code == 403
        out = await hc.post(f"{d.dashboard}/logout", headers={"x-csrf-token": data["session"]["csrf"]})
        assert out.status_code == 303
        async with client(d, session=sid) as old:  # the id is dead on the server, not just dropped by the browser
            assert (await old.get(f"{d.dashboard}/api/snapshot")).status_code == 401

        # A bearer token (a JWT naming this server) logs in as well, if its roles grant the dashboard.
        async with client(d) as jwt_client:
            admin_jwt = await dev_jwt(tmp_path, "ops-jwt", "admin", audience=d.server.url)
            agent_jwt = await dev_jwt(tmp_path, "dev-jwt", "agent", audience=d.server.url)
            assert session_cookie(await login(jwt_client, d, agent_jwt)) is None
            assert session_cookie(await login(jwt_client, d, admin_jwt)) is not None
            who = (await jwt_client.get(f"{d.dashboard}/api/snapshot")).json()["session"]["principal"]
            assert who.startswith("ops-jwt (jwt")

        # Guessing: the lockout (3 failures here) answers "too many attempts" without checking the key again.
        for _ in range(2):
            assert (await login(hc, d, WRONG_KEY)).headers["location"].endswith("?e=refused")
        assert (await login(hc, d, WRONG_KEY)).headers["location"].endswith("?e=busy")
        assert "Too many attempts" in (await hc.get(f"{d.dashboard}/login?e=busy")).text

        # The refusals are in the audit trail (reasons only), and no credential is anywhere in it or in the logs.
        def kinds() -> set[tuple[object, object]]:
            return {(r["kind"], r["reason"] if r["kind"] != "auth_failure" else "-") for r in d.audit()}

        wanted = {("auth_failure", "-"), ("denied", "dashboard_not_allowed"), ("locked_out", "locked_out")}
        await wait_for(lambda: wanted <= kinds() or None, 10, message=lambda: f"audit has {kinds()}")
        everything = d.audit_file.read_text() + d.server.stdout() + d.server.stderr()
        for secret in (d.admin_key, d.agent_key, WRONG_KEY, sid, admin_jwt, agent_jwt):
            assert secret not in everything


async def test_insecure_dev_has_no_dashboard_and_the_page_script_never_parses_html(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    # --insecure-dev has no authentication, so it has no dashboard at all.
    server = await launch(tmp_path, "dev", nats_server.url, "--insecure-dev", NATS_MCP_NAMESPACE="dash-dev")
    try:
        async with http_client() as hc:
            assert (await hc.get(f"{server.base}/dashboard")).status_code == 404
            assert (await hc.get(f"{server.base}/dashboard/api/snapshot")).status_code == 404
    finally:
        await server.stop()
    # The page's script sets everything as text: no innerHTML anywhere (the browser test sends markup).
    script = (Path(__file__).parents[2] / "src/nats_mcp/dashboard/static/app.js").read_text()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", script)


async def test_standalone_dashboard_command_serves_the_same_page_on_loopback(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    admin, _ = await api_key(tmp_path, nats_server.url, "ops", "admin")
    agent, _ = await api_key(tmp_path, nats_server.url, "worker", "agent")
    env = isolated_env(
        tmp_path, NATS_URL=nats_server.url, NATS_MCP_NAMESPACE="dash-alone", NATS_MCP_SECURITY_POLICY_FILE=str(policy)
    )
    errors = tmp_path / "dashboard.err"
    with errors.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            nats_mcp_exe(),
            "dashboard",
            "--port",
            "0",
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            preexec_fn=_pdeathsig_preexec(),
        )
    try:

        def url() -> str | None:
            assert proc.returncode is None, errors.read_text()
            found = re.search(r"dashboard \(admins\) at (http://127\.0\.0\.1:\d+/dashboard)", errors.read_text())
            return found.group(1) if found else None

        dashboard = await wait_for(url, 30, message=lambda: f"no dashboard URL printed:\n{errors.read_text()}")
        base = dashboard.removesuffix("/dashboard")
        async with httpx2.AsyncClient(headers={"origin": base}, follow_redirects=False, trust_env=False) as hc:
            assert (await hc.get(base + "/")).headers["location"] == "/dashboard"
            assert (await hc.get(dashboard)).status_code == 303
            assert (await hc.get(dashboard + "/api/snapshot")).status_code == 401
            refused = await hc.post(dashboard + "/login", data={"credential": agent})
            assert refused.headers["location"].endswith("?e=refused") and session_cookie(refused) is None
            assert session_cookie(await hc.post(dashboard + "/login", data={"credential": admin})) is not None
            snap = await hc.get(dashboard + "/api/snapshot")
            assert snap.status_code == 200 and snap.json()["namespace"] == "dash-alone"
        # Off loopback without TLS it refuses to start.
        code, _, error = await run_cli(
            tmp_path, "dashboard", "--host", "192.0.2.1", "--port", "0", NATS_URL=nats_server.url
        )
        assert code == 2 and "only with TLS" in error
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert admin not in errors.read_text() and agent not in errors.read_text()


async def snapshot(hc: httpx2.AsyncClient, d: Deployment) -> dict[str, Any]:
    response = await hc.get(f"{d.dashboard}/api/snapshot")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_repeated_refusals_are_one_row_with_the_true_count_and_agents_show_their_key(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    # No lockout within the test (300 identical failures stay identical); a traffic window far below 300.
    env = {"NATS_MCP_SECURITY_LOCKOUT_MAX_FAILURES": "10000", "NATS_MCP_DASHBOARD_TRAFFIC_WINDOW": "50"}
    async with deployment(tmp_path, nats_server, "dash-groups", **env) as d, client(d) as hc:
        assert session_cookie(await login(hc, d, d.admin_key)) is not None
        await snapshot(hc, d)  # the feed's first look is behind us

        # A client retrying a wrong key 300 times through the real MCP endpoint.
        async with http_client(WRONG_KEY) as intruder:

            async def attempt() -> int:
                return (await post_init(intruder, d.server.url)).status_code

            for _ in range(30):
                assert set(await asyncio.gather(*(attempt() for _ in range(10)))) == {401}

        def refusals(snap: dict[str, Any]) -> list[dict[str, Any]]:
            return [e for e in snap["security"]["events"] if e["kind"] == "auth_failure" and e["transport"] == "http"]

        seen: list[dict[str, Any]] = []

        async def counted() -> dict[str, Any] | None:
            seen[:] = [await snapshot(hc, d)]
            rows = refusals(seen[0])
            return seen[0] if rows and sum(r["count"] for r in rows) >= 300 else None

        snap = await wait_for(
            counted, 30, interval=0.3, message=lambda: f"not all 300 refusals counted: {seen[0]['security']}"
        )
        [row] = refusals(snap)  # one row, not one per refusal
        assert row["count"] == 300 and row["peer"] == "127.0.0.1" and row["principal"] is None
        assert row["firstSeen"] <= row["lastSeen"] and row["time"] == row["lastSeen"]
        # The total counts every event read (the refusals, and the anomaly the detector raised about them).
        assert snap["security"]["total"] == sum(e["count"] for e in snap["security"]["events"])

        # An agent: the page names it by its handle and by the key it came through (the key is named "worker").
        async with mcp_client(d.server.url, d.agent_key, agent="docs") as agent:
            guid = (await ok(agent, "warp_registry_register", agentType="docs-writer"))["agent"]["guid"]
            await ok(agent, "warp_channels_send", channel="roadmap", message="hello")

            async def named() -> dict[str, Any] | None:
                snap = await snapshot(hc, d)
                rows = [a for a in snap["agents"]["shown"] if a["guid"] == guid and a["via"]]
                return snap if rows and snap["traffic"]["edges"] else None

            snap = await wait_for(named, 30, interval=0.3, message="the agent was not named with its key")
        [row] = [a for a in snap["agents"]["shown"] if a["guid"] == guid]
        assert row["handle"] == "docs-writer" and re.fullmatch(r"worker \[key \w+\]", row["via"])
        edges = [e for e in snap["traffic"]["edges"] if e["principal"] == row["via"]]
        assert edges and all(e["agents"] == ["docs-writer"] for e in edges)


async def test_an_http_agent_reads_offline_when_its_session_ends_and_idle_when_it_goes_quiet(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    # Heartbeats every second, stale only after 100 s: within this test only a session's end makes "offline".
    env = {"NATS_MCP_PRESENCE_HEARTBEAT_INTERVAL_S": "1", "NATS_MCP_PRESENCE_STALE_AFTER_INTERVALS": "100"}
    async with deployment(tmp_path, nats_server, "dash-presence", **env) as d, client(d) as hc:
        assert session_cookie(await login(hc, d, d.admin_key)) is not None

        async def agent_row(guid: str, want: str, field: str = "status") -> dict[str, Any] | None:
            rows = [a for a in (await snapshot(hc, d))["agents"]["shown"] if a["guid"] == guid]
            return rows[0] if rows and rows[0][field] == want else None

        # A 2025-11-25 client holds a session and ends it (DELETE) when it closes.
        async with mcp_client(d.server.url, d.agent_key, agent="leaver", mode="legacy") as leaver:
            left = (await ok(leaver, "warp_registry_register", agentType="leaver"))["agent"]["guid"]
            await wait_for(lambda: agent_row(left, "online"), 10, interval=0.2, message="the agent is not online")
        row = await wait_for(
            lambda: agent_row(left, "offline"),
            10,
            interval=0.2,
            message="the agent still reads online after its session ended",
        )
        assert row["presence"] == "offline" and row["lastSeenAgoS"] < 100

        # A 2026-07-28 client has no session: once it stops calling, the page shows it idle (it is not offline).
        async with mcp_client(d.server.url, d.agent_key, agent="quiet") as quiet:
            still = (await ok(quiet, "warp_registry_register", agentType="quiet"))["agent"]["guid"]
        row = await wait_for(
            lambda: agent_row(still, "idle", "presence"), 10, interval=0.2, message="the quiet agent never read idle"
        )
        assert row["status"] == "online"
        # It calls again: online again at once (its call is its heartbeat).
        async with mcp_client(d.server.url, d.agent_key, agent="quiet") as quiet:
            await ok(quiet, "warp_channels_send", channel="roadmap", message="back")
            await wait_for(
                lambda: agent_row(still, "online", "presence"),
                10,
                interval=0.2,
                message="the agent that called again is not online",
            )


async def test_a_revoked_key_ends_its_dashboard_session(tmp_path: Path, nats_server: NatsServer) -> None:
    """Issue 19 #9: a session lives no longer than the key that opened it. Revoked with `nats-mcp keys revoke`, the
    next data request within the re-check interval is refused, the session is gone (the page sends the browser to
    the login form), and the end is audited."""
    async with deployment(tmp_path, nats_server, "dash-revoke") as d, client(d) as hc:
        assert session_cookie(await login(hc, d, d.admin_key)) is not None
        assert (await hc.get(f"{d.dashboard}/api/snapshot")).status_code == 200
        key_id = d.admin_key.split("_")[1]
        code, out, error = await run_cli(tmp_path, "keys", "revoke", key_id, NATS_URL=nats_server.url)
        assert code == 0 and f"revoked {key_id}" in out, error

        async def refused() -> bool:
            return (await hc.get(f"{d.dashboard}/api/snapshot")).status_code == 401

        # The deadline is the robustness limit: refused after RECHECK_S (1 s) and the round trips, where a session
        # that outlived its key would get data for the rest of its life (hours).
        await wait_for(refused, 10, interval=0.1, message="the revoked key's session still gets data")
        page = await hc.get(d.dashboard)
        assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"  # the session is gone
        await wait_for(lambda: any(r["reason"] == "dashboard_session_revoked" for r in d.audit()), 10)
        assert d.admin_key not in d.audit_file.read_text() + d.server.stdout() + d.server.stderr()


async def test_a_session_never_outlives_its_tokens_expiry(tmp_path: Path, nats_server: NatsServer) -> None:
    """A token past its exp but inside the issuer's leeway still logs in; its session is refused at the first data
    request and dropped: a session lasts no longer than the token's exp."""
    async with deployment(tmp_path, nats_server, "dash-exp") as d, client(d) as hc:
        args = [
            "token",
            "issue",
            "--subject",
            "ops-brief",
            "--role",
            "admin",
            "--ttl",
            "1s",
            "--audience",
            d.server.url,
        ]
        code, out, error = await run_cli(tmp_path, *args)
        assert code == 0, error
        token = out.strip()
        exp = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["exp"]
        await wait_for(lambda: time.time() > exp, 10)  # the token's own clock, not a fixed pause
        assert session_cookie(await login(hc, d, token)) is not None  # within the verifier's leeway
        assert (await hc.get(f"{d.dashboard}/api/snapshot")).status_code == 401
        page = await hc.get(d.dashboard)
        assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
        await wait_for(lambda: any(r["reason"] == "dashboard_session_expired" for r in d.audit()), 10)
