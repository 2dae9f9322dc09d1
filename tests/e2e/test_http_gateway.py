"""Boundary of `nats-mcp serve --transport http` as a multi-agent gateway: real processes, nats-server, tokens, SDK."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path

import httpx2
import pytest
from mcp import Client

from nats_mcp.api.resources import channel_uri
from tests.support.certs import client_ssl_context, make_tls_material
from tests.support.http_server import (
    KEY_RE,
    HttpServer,
    api_key,
    dev_jwt,
    guid,
    http_client,
    launch,
    mcp_client,
    metadata_url,
    policy_file,
    post_init,
    run_cli,
    serving,
)
from tests.support.natsserver import NatsServer, wait_for
from tests.support.stdio import TOOLS, err, ok
from tests.support.work_tools import broadcast, claim, dlq, queues, register

CAP = "python"


# ---- harness: serve processes, clients, tokens ---------------------------------------------------------------------


# ---- 1. two principals through one server: the coordination and the work scenarios, both revisions -----------------


@pytest.mark.slow
async def test_two_principals_coordinate_and_work_through_one_server(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {
        "NATS_MCP_NAMESPACE": "team-gw",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_SECURITY_DEV_TOKENS": "true",
    }
    async with serving(tmp_path, "gw", nats_server.url, **env) as server:
        key_a, _ = await api_key(tmp_path, nats_server.url, "alpha", "agent")
        jwt_b = await dev_jwt(tmp_path, "beta", "agent", audience=server.url)  # JWT roles are groups: policy maps them

        # -- coordination: A (API key) on 2026-07-28, B (dev JWT) on the 2025-11-25 handshake
        async with mcp_client(server.url, key_a) as a, mcp_client(server.url, jwt_b, mode="legacy") as b:
            assert {t.name for t in (await a.list_tools()).tools} == TOOLS
            assert {t.name for t in (await b.list_tools()).tools} == TOOLS
            await ok(a, "warp_handle_set", handle="alice")
            ra = (await ok(a, "warp_registry_register", agentType="developer", capabilities=["python", "review"]))[
                "agent"
            ]
            rb = (await ok(b, "warp_registry_register", agentType="code_reviewer", capabilities=[CAP]))["agent"]
            guid_a, guid_b = ra["guid"], rb["guid"]
            assert guid_a != guid_b
            assert ra["handle"] == "alice" and rb["handle"] == "code-reviewer"
            assert (await guid(a), await guid(b)) == (guid_a, guid_b)
            for client in (a, b):
                seen = {x["guid"]: x for x in (await ok(client, "warp_registry_discover"))["agents"]}
                assert set(seen) == {guid_a, guid_b}
                assert seen[guid_a]["capabilities"] == ["python", "review"]
            assert (await ok(b, "warp_registry_get_info", guid=guid_a))["agent"]["handle"] == "alice"
            pythonistas = (await ok(a, "warp_registry_discover", capability="review"))["agents"]
            assert [x["guid"] for x in pythonistas] == [guid_a]

            # channel: A sends, B reads (tool and resource); the sender is the server's to say
            await ok(a, "warp_channels_send", channel="roadmap", message="ship the gateway")
            page = await ok(b, "warp_channels_read", channel="roadmap")
            assert [(m["message"], m["senderGuid"], m["handle"]) for m in page["messages"]] == [
                ("ship the gateway", guid_a, "alice")
            ]
            resource = await b.read_resource(channel_uri("roadmap"))
            body = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
            assert [m["message"] for m in body["messages"]] == ["ship the gateway"]

            # DMs: only the recipient reads its inbox, once
            sent = await ok(a, "warp_messages_send_direct", recipientGuid=guid_b, message="hello B")
            assert sent["recipientHandle"] == "code-reviewer"
            assert (await ok(a, "warp_messages_read_direct"))["messages"] == []
            first = (await ok(b, "warp_messages_read_direct"))["messages"]
            assert [(m["content"], m["senderGuid"], m["senderHandle"]) for m in first] == [("hello B", guid_a, "alice")]
            assert (await ok(b, "warp_messages_read_direct"))["messages"] == []
            await ok(b, "warp_messages_send_direct", recipientGuid=guid_a, message="hi A")

            # the agent header: the same principal (A's key) acts as a second, separate agent
            async with mcp_client(server.url, key_a, agent="alpha-2", mode="legacy") as a2:
                guid_a2 = await guid(a2)
                assert guid_a2 not in (guid_a, guid_b)
                await ok(a2, "warp_registry_register", agentType="helper")
                assert (await ok(a2, "warp_messages_read_direct"))["messages"] == []  # not A's inbox
                assert (await ok(a2, "warp_handle_get"))["handle"] != "alice"
                seen_by_b = {x["guid"] for x in (await ok(b, "warp_registry_discover"))["agents"]}
                assert seen_by_b == {guid_a, guid_b, guid_a2}
            # asking a teammate: A asks in a new thread; B waits for it and answers in it; A's waiting read, filtered
            # to the thread, returns the answer and leaves "hi A" unread
            asked = await ok(a, "warp_messages_send_direct", recipientGuid=guid_b, message="is the build green?")
            thread = asked["threadId"]
            [question] = (await ok(b, "warp_messages_read_direct", threadId=thread, waitMs=10_000))["messages"]
            assert (question["content"], question["threadId"], question["inReplyTo"]) == (
                "is the build green?",
                thread,
                None,
            )
            waiting = asyncio.create_task(ok(a, "warp_messages_read_direct", threadId=thread, waitMs=30_000))
            replied = await ok(
                b,
                "warp_messages_send_direct",
                recipientGuid=guid_a,
                message="yes",
                threadId=thread,
                inReplyTo=question["id"],
            )
            assert replied["threadId"] == thread
            [answer] = (await asyncio.wait_for(waiting, 30))["messages"]
            assert (answer["content"], answer["threadId"], answer["inReplyTo"], answer["senderGuid"]) == (
                "yes",
                thread,
                question["id"],
                guid_b,
            )
            assert [m["content"] for m in (await ok(a, "warp_messages_read_direct"))["messages"]] == ["hi A"]

        # -- work: reconnected, revisions swapped; each principal is the same agent again
        async with mcp_client(server.url, key_a, mode="legacy") as a, mcp_client(server.url, jwt_b) as b:
            assert (await guid(a), await guid(b)) == (guid_a, guid_b)
            assert (await ok(a, "warp_handle_get"))["handle"] == "alice"
            first_id = await broadcast(a, "review-1", priority=8)
            second_id = await broadcast(a, "review-2", priority=3)
            item = await claim(b, timeout=2000)
            assert item is not None and (item["id"], item["offeredBy"], item["attempts"]) == (first_id, guid_a, 1)
            assert await err(a, "warp_work_complete", workItemId=first_id) == "forbidden"
            assert await err(a, "warp_work_progress", workItemId=first_id, progress=10) == "forbidden"
            progressed = await ok(b, "warp_work_progress", workItemId=first_id, progress=50, note="half")
            assert progressed["workItemId"] == first_id
            assert await ok(b, "warp_work_complete", workItemId=first_id, result={"ok": True}) == {
                "workItemId": first_id,
                "status": "completed",
            }
            assert await err(b, "warp_work_complete", workItemId=first_id) == "conflict"

            # fail to the DLQ, retry, claim again, complete
            item = await claim(b, timeout=2000)
            assert item is not None and item["id"] == second_id
            failed = await ok(b, "warp_work_fail", workItemId=second_id, reason="flaky disk", recoverable=False)
            assert failed == {"workItemId": second_id, "status": "dead_lettered", "attempts": 1}
            [entry] = await dlq(a)
            assert (entry["id"], entry["reason"]) == (second_id, "unrecoverable")
            assert any("flaky disk" in e and guid_b in e for e in entry["errors"])
            assert await queues(a, CAP) == {CAP: (0, 0, 1)}
            assert await ok(a, "warp_dlq_retry", itemId=second_id) == {"itemId": second_id, "requeued": True}
            again = await claim(b, timeout=5000)
            assert again is not None and (again["id"], again["attempts"]) == (second_id, 2)
            await ok(b, "warp_work_complete", workItemId=second_id)
            assert await queues(a, CAP) == {CAP: (0, 0, 0)}
            assert await dlq(a) == []


# ---- 2. two servers, one NATS: interchangeable, and one may die ----------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_one_key_running_several_agents_at_once_never_crosses_them(
    tmp_path: Path, nats_server: NatsServer, mode: str
) -> None:
    """Found by the soak: the principal cache was keyed by token alone, so concurrent requests with one key and
    different agent headers could act as each other's agent (and a claimer could not complete its own item)."""
    key, _ = await api_key(tmp_path, nats_server.url, "fleet", "agent")
    # 75 calls at once from one key: its agents share one rate limit (the default burst is 40), so raise it here
    async with (
        serving(
            tmp_path,
            "fleet",
            nats_server.url,
            NATS_MCP_NAMESPACE="team-fleet",
            NATS_MCP_SECURITY_RATE_PER_PRINCIPAL_BURST="200",
        ) as server,
        contextlib.AsyncExitStack() as stack,
    ):
        clients = [
            await stack.enter_async_context(mcp_client(server.url, key, agent=f"worker-{i}", mode=mode))
            for i in range(3)
        ]

        async def identities(client: Client) -> set[str]:
            return {(await ok(client, "warp_handle_get"))["agentGuid"] for _ in range(25)}

        seen = await asyncio.gather(*(identities(c) for c in clients))
    assert all(len(s) == 1 for s in seen), seen
    assert len(set().union(*seen)) == 3, seen


async def test_two_servers_serve_the_same_agents_and_survive_a_kill(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {"NATS_MCP_NAMESPACE": "team-pair"}
    url = nats_server.url
    (key_a, _), (key_b, _) = await asyncio.gather(api_key(tmp_path, url, "alpha"), api_key(tmp_path, url, "beta"))
    s1, s2 = await asyncio.gather(launch(tmp_path, "s1", url, **env), launch(tmp_path, "s2", url, **env))
    try:
        assert s1.port != s2.port
        async with mcp_client(s2.url, key_b) as b2:
            dying = contextlib.AsyncExitStack()  # the clients of server 1, closed (in order) once it is dead
            try:
                a1 = await dying.enter_async_context(mcp_client(s1.url, key_a))
                b1 = await dying.enter_async_context(mcp_client(s1.url, key_b, mode="legacy"))
                guid_a = await register(a1)
                guid_b = await register(b2, CAP)
                assert await guid(b1) == guid_b  # the same principal is the same agent on either server
                await ok(a1, "warp_handle_set", handle="alice")

                # A sends through server 1, B reads through server 2
                await ok(a1, "warp_messages_send_direct", recipientGuid=guid_b, message="via s1")
                got = (await ok(b2, "warp_messages_read_direct"))["messages"]
                assert [(m["content"], m["senderGuid"]) for m in got] == [("via s1", guid_a)]
                await ok(a1, "warp_channels_send", channel="parallel-work", message="before the crash")

                # broadcast through one, claim through the other (both ways)
                first = await broadcast(a1, "t1", priority=9)
                item = await claim(b2, timeout=2000)
                assert item is not None and (item["id"], item["offeredBy"]) == (first, guid_a)
                second = await broadcast(a1, "t2", priority=2)
                item = await claim(b1, timeout=2000)
                assert item is not None and item["id"] == second

                # server 1 dies hard; its clients' sessions die with it
                s1.proc.send_signal(signal.SIGKILL)
                assert await s1.proc.wait() == -signal.SIGKILL
            finally:
                with contextlib.suppress(Exception):
                    await dying.aclose()

            # the agents carry on through server 2: same identities, same data, same claims
            async with mcp_client(s2.url, key_a, mode="legacy") as a2:
                assert await guid(a2) == guid_a
                assert (await ok(a2, "warp_handle_get"))["handle"] == "alice"
                page = await ok(b2, "warp_channels_read", channel="parallel-work")
                assert [(m["message"], m["senderGuid"]) for m in page["messages"]] == [("before the crash", guid_a)]
                assert await queues(a2, CAP) == {CAP: (0, 2, 0)}
                assert await err(a2, "warp_work_complete", workItemId=second) == "forbidden"
                for item_id in (first, second):  # the one claimed through the dead server too
                    done = await ok(b2, "warp_work_complete", workItemId=item_id)
                    assert done == {"workItemId": item_id, "status": "completed"}
                assert await queues(a2, CAP) == {CAP: (0, 0, 0)}
                await ok(b2, "warp_messages_send_direct", recipientGuid=guid_a, message="still here")
                got = (await ok(a2, "warp_messages_read_direct"))["messages"]
                assert [(m["content"], m["senderGuid"]) for m in got] == [("still here", guid_b)]
                discovered = {x["guid"] for x in (await ok(a2, "warp_registry_discover"))["agents"]}
                assert {guid_a, guid_b} <= discovered
    finally:
        for server in (s1, s2):
            if server.proc.returncode is None:
                await server.stop()
    assert s2.proc.returncode == 0, s2.stderr()[-3000:]


# ---- 3. refusing to start without authentication; --insecure-dev on loopback only ---------------------------------


async def test_start_refusals_and_insecure_dev_on_loopback(tmp_path: Path, nats_server: NatsServer) -> None:
    url = nats_server.url
    port_file = str(tmp_path / "refused.port")
    env = {"NATS_URL": url, "NATS_MCP_HTTP_PORT_FILE": port_file}
    no_auth, public_dev = await asyncio.gather(
        run_cli(tmp_path, "serve", "--transport", "http", "--port", "0", NATS_MCP_SECURITY_API_KEYS="false", **env),
        run_cli(tmp_path, "serve", "--transport", "http", "--port", "0", "--host", "0.0.0.0", "--insecure-dev", **env),  # noqa: S104
    )
    code, _, error = no_auth
    assert code == 2, error
    assert "HTTP needs authentication" in error and "--insecure-dev" in error
    code, _, error = public_dev
    assert code == 2, error
    assert "loopback" in error and "0.0.0.0" in error  # noqa: S104
    assert not Path(port_file).exists()  # neither got as far as listening

    async with serving(tmp_path, "dev", url, "--insecure-dev", NATS_MCP_NAMESPACE="team-dev") as server:
        assert "INSECURE DEV MODE" in server.stderr() and "WARNING" in server.stderr()
        async with mcp_client(server.url) as one, mcp_client(server.url, agent="two", mode="legacy") as two:
            g1 = await register(one, CAP)
            g2 = await register(two)
            assert g1 != g2  # one dev agent per agent header
            await ok(two, "warp_messages_send_direct", recipientGuid=g1, message="no token needed")
            assert [m["content"] for m in (await ok(one, "warp_messages_read_direct"))["messages"]] == [
                "no token needed"
            ]
        async with mcp_client(server.url) as again:
            assert await guid(again) == g1
        assert await server.stop() == 0


# ---- 4. TLS ---------------------------------------------------------------------------------------------------------


async def test_tls(tmp_path: Path, nats_server: NatsServer) -> None:
    tls = make_tls_material(tmp_path / "tls")
    key, _ = await api_key(tmp_path, nats_server.url, "secure")
    args = ("--tls-cert", str(tls.server.cert_file), "--tls-key", str(tls.server.key_file))
    async with serving(tmp_path, "tls", nats_server.url, *args, NATS_MCP_NAMESPACE="team-tls") as server:
        assert server.url.startswith("https://")
        trusted = client_ssl_context(tls.ca_file)
        async with mcp_client(server.url, key, verify=trusted, mode="legacy") as client:
            await register(client, CAP)
            await ok(client, "warp_channels_send", channel="parallel-work", message="over TLS")
        async with mcp_client(server.url, key, verify=trusted) as client:
            messages = (await ok(client, "warp_channels_read", channel="parallel-work"))["messages"]
            assert [m["message"] for m in messages] == ["over TLS"]
        async with http_client(verify=trusted) as hc:
            meta = await hc.get(metadata_url(server.base))
            assert meta.status_code == 200 and meta.json()["resource"] == server.url
            refused = await post_init(hc, server.url)
            assert refused.status_code == 401
            assert f'resource_metadata="{metadata_url(server.base)}"' in refused.headers["www-authenticate"]
            assert (await post_init(hc, server.url, key)).status_code == 200
        async with http_client(verify=client_ssl_context(tls.untrusted_ca_file)) as hc:
            with pytest.raises(httpx2.ConnectError, match=r"(?i)certificate"):
                await hc.get(metadata_url(server.base))
        async with http_client() as hc:  # plain HTTP to the TLS port gets nowhere
            try:
                plain = await hc.get(metadata_url(f"http://127.0.0.1:{server.port}"))
            except httpx2.HTTPError:
                pass
            else:
                assert plain.status_code >= 400
        assert await server.stop() == 0


# ---- 5. the quick start: a printed key that works, kept across restarts, limits fit for a local team --------------


def quickstart_key(printed: str) -> str:
    keys = set(KEY_RE.findall(printed))
    assert len(keys) == 1, printed
    return keys.pop()


async def quickstart_banner(server: HttpServer) -> str:
    return await wait_for(
        lambda: "Ctrl-C stops the server." in server.stdout() and server.stdout(),
        30,
        message=lambda: f"no quick-start text: {server.stdout()!r}",
    )


@pytest.mark.slow
async def test_quickstart_prints_a_working_key_kept_across_restarts(tmp_path: Path, nats_server: NatsServer) -> None:
    url = nats_server.url
    env = {"NATS_MCP_NAMESPACE": "team-qs"}
    quick, other = await asyncio.gather(
        launch(tmp_path, "quick", url, "--quickstart", **env), launch(tmp_path, "other", url, **env)
    )
    try:
        printed = await quickstart_banner(quick)
        key = quickstart_key(printed)
        assert f"MCP server: {quick.url}" in printed
        assert f'claude mcp add --transport http nats-mcp {quick.url} --header "Authorization: Bearer {key}"' in (
            printed
        )
        config = json.loads(printed.split("MCP client JSON:\n", 1)[1].split("\n\n", 1)[0])
        assert config == {
            "mcpServers": {
                "nats-mcp": {"type": "http", "url": quick.url, "headers": {"Authorization": f"Bearer {key}"}}
            }
        }
        # A pinned Inspector: an unpinned npx on Node 20 picks 0.15.0, which refuses these arguments.
        assert f"npx -y @modelcontextprotocol/inspector@2.12.0 --cli {quick.url} --transport http" in printed
        assert "Rate limits: 200 calls/s with bursts of 400 for the key" in printed
        assert "(new;" in printed
        assert key not in quick.stderr()
        key_file = tmp_path / "home" / ".local" / "share" / "nats-mcp" / "quickstart.key"
        assert key_file.read_text().strip() == key
        assert key_file.stat().st_mode & 0o777 == 0o600

        async with mcp_client(quick.url, key) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            mine = await register(client, CAP)
            # A plain loop of one agent: the general default (20/s, burst 40) refused 150 of these 200.
            refused = [r for r in [await client.call_tool("warp_channels_list", {}) for _ in range(200)] if r.is_error]
            assert refused == [], refused[0]
        async with mcp_client(other.url, key, mode="legacy") as client:  # a key is deployment-wide
            assert await guid(client) == mine

        assert await quick.stop(signal.SIGINT) == 0, quick.stderr()[-3000:]
        async with http_client() as hc:  # the pasted client configuration keeps working after Ctrl-C
            assert (await post_init(hc, other.url, key)).status_code == 200

        again = await launch(tmp_path, "again", url, "--quickstart", **env)
        try:
            printed = await quickstart_banner(again)
            assert quickstart_key(printed) == key
            assert "(kept from the last run;" in printed
        finally:
            assert await again.stop(signal.SIGINT) == 0, again.stderr()[-3000:]

        rotated = await launch(tmp_path, "rotated", url, "--quickstart", "--rotate-key", **env)
        try:
            new_key = quickstart_key(await quickstart_banner(rotated))
            assert new_key != key
            assert key_file.read_text().strip() == new_key
            async with http_client() as hc:

                async def rotated_out() -> bool:  # revoked: the other process learns it from its watch of the keys
                    return (await post_init(hc, other.url, key)).status_code == 401

                await wait_for(rotated_out, 10, message="the rotated-out key still gets in")
                assert (await post_init(hc, other.url, new_key)).status_code == 200
        finally:
            assert await rotated.stop(signal.SIGINT) == 0, rotated.stderr()[-3000:]
    finally:
        for server in (quick, other):
            if server.proc.returncode is None:
                await server.stop()


async def test_quickstart_limits_yield_to_the_users_settings(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {"NATS_MCP_NAMESPACE": "team-qs2", "NATS_MCP_SECURITY_RATE_PER_PRINCIPAL_RATE_PER_S": "5"}
    async with serving(tmp_path, "quick", nats_server.url, "--quickstart", **env) as quick:
        printed = await quickstart_banner(quick)
        assert "Rate limits: 5 calls/s with bursts of 40 for the key" in printed
    code, _, error = await run_cli(tmp_path, "serve", "--transport", "http", "--rotate-key", NATS_URL=nats_server.url)
    assert code == 2
    assert "--rotate-key goes with --quickstart" in error
