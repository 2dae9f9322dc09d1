"""The nats_* group end to end over stdio with the real SDK client: off unless enabled and granted, the example
policy's reader and admin roles, the server's own streams refused even to '*', and paged output."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mcp_types as types
import nats
import pytest
from mcp.shared.exceptions import MCPError

from nats_mcp.api.tools.natsops import OPS_TOOLS
from tests.support.env import isolated_env, nats_mcp_exe
from tests.support.natsserver import NatsServer, wait_for
from tests.support.stdio import agent, err, ok

pytestmark = pytest.mark.slow

EXAMPLE_POLICY = Path(__file__).parents[2] / "docs" / "examples" / "nats-ops-policy.yaml"
NS = "team-e"
WORK_STREAM = f"nmcp_{NS}_work"


def _nats(names: set[str]) -> set[str]:
    return {n for n in names if n.startswith("nats_")}


async def test_ops_group_off_by_default_and_scoped_by_the_policy(tmp_path: Path, nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    for name in ("ORDERS_EU", "ORDERS_US", "ORDERS_ASIA", "PAYMENTS"):
        await js.add_stream(name=name, subjects=[f"{name.lower().replace('_', '.')}.>"])  # orders.eu.>, ...
    policy = {"NATS_MCP_SECURITY_POLICY_FILE": str(EXAMPLE_POLICY)}
    on = {"NATS_MCP_NATS_OPS_ENABLED": "true"}
    reader = {"NATS_MCP_SECURITY_LOCAL_ROLES": '["nats-reader"]', **on, **policy}
    admin = {"NATS_MCP_SECURITY_LOCAL_ROLES": '["nats-admin"]', **on, **policy}
    try:
        async with (
            agent(tmp_path, nats_server, "off", NS, **{**admin, "NATS_MCP_NATS_OPS_ENABLED": "false"}) as off,
            agent(tmp_path, nats_server, "builtin", NS, **on) as builtin,
            agent(tmp_path, nats_server, "ro", NS, **reader) as ro,
            agent(tmp_path, nats_server, "adm", NS, **admin) as adm,
        ):
            # Not enabled: not listed and not callable, whatever the policy grants.
            assert _nats({t.name for t in (await off.list_tools()).tools}) == set()
            with pytest.raises(MCPError) as unknown:  # an unknown tool there: a protocol error, not a tool result
                await off.call_tool("nats_stream_list", {})
            assert unknown.value.code == types.INVALID_PARAMS
            # Enabled but the built-in policy (no file): its role has tools ["*"] and no nats block.
            builtin_tools = {t.name for t in (await builtin.list_tools()).tools}
            assert _nats(builtin_tools) == set() and "warp_channels_send" in builtin_tools
            assert await err(builtin, "nats_server_info") == "forbidden"

            # The reader sees the read tools only, with truthful hints, and gets refused a write.
            ro_tools = {t.name: t for t in (await ro.list_tools()).tools if t.name.startswith("nats_")}
            assert set(ro_tools) == {
                "nats_server_info",
                "nats_stream_list",
                "nats_stream_info",
                "nats_stream_get_message",
                "nats_consumer_list",
                "nats_consumer_info",
                "nats_kv_list",
                "nats_kv_get",
                "nats_kv_history",
                "nats_kv_keys",
            }
            assert all(t.annotations and t.annotations.read_only_hint for t in ro_tools.values())
            assert await err(ro, "nats_publish", subject="orders.x", payload="x") == "forbidden"
            assert await err(ro, "nats_stream_info", stream="PAYMENTS") == "forbidden"

            # The admin sees every tool; destructive ones say so.
            adm_tools = {t.name: t for t in (await adm.list_tools()).tools if t.name.startswith("nats_")}
            assert len(adm_tools) == 20
            assert adm_tools["nats_stream_delete"].annotations.destructive_hint  # type: ignore[union-attr]
            assert not adm_tools["nats_publish"].annotations.read_only_hint  # type: ignore[union-attr]

            # The server's own work stream (created by these serve processes) is listed as internal, never writable.
            async def work_stream_listed() -> bool:
                listed = await ok(ro, "nats_stream_list", limit=100)
                return any(s["name"] == WORK_STREAM and s["internal"] for s in listed["streams"])

            await wait_for(work_stream_listed, 20, message="the namespace's work stream appears")
            assert await err(adm, "nats_stream_delete", name=WORK_STREAM) == "forbidden"
            assert await err(adm, "nats_stream_purge", name=WORK_STREAM) == "forbidden"
            assert await err(adm, "nats_publish", subject=f"nmcp.{NS}.chan.general", payload="forged") == "forbidden"
            assert (await js.stream_info(WORK_STREAM)).config.name == WORK_STREAM

            # Paged output: one stream per page, with a cursor to the next.
            names, cursor = [], None
            while True:
                page = await ok(ro, "nats_stream_list", limit=1, **({"cursor": cursor} if cursor else {}))
                names += [s["name"] for s in page["streams"]]
                cursor = page["nextCursor"]
                if cursor is None:
                    break
            assert [n for n in names if n.startswith("ORDERS")] == ["ORDERS_ASIA", "ORDERS_EU", "ORDERS_US"]
            assert "PAYMENTS" not in names and len(names) == len(set(names))

            # A write the admin may make works end to end.
            await ok(adm, "nats_publish", subject="orders.eu.created", payload='{"id": 1}')
            message = (await ok(ro, "nats_stream_get_message", stream="ORDERS_EU", seq=1))["message"]
            assert message["payload"]["data"] == '{"id": 1}'
    finally:
        await nc.close()


def test_policy_check_shows_the_nats_tools_a_role_may_call(tmp_path: Path) -> None:
    done = subprocess.run(
        [nats_mcp_exe(), "policy", "check", str(EXAMPLE_POLICY), "--subject", "me", "--role", "nats-reader", "--json"],
        env=isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert set(json.loads(done.stdout)["tools"]) == {spec.suffix for spec in OPS_TOOLS if spec.read_only}
