"""KV reads while a bucket elects a leader: on a 3-node cluster, with the bucket's leader SIGKILLed, a get through
the bus (ensure_kv) is answered by a follower, where nats-py's own get (leader only) times out; buckets are made,
and existing ones brought, to allow direct gets — by a user that may, while one that may not goes on with the bucket
as it is."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from nats_mcp.bus import failover
from nats_mcp.bus.setup import ensure_kv
from tests.support.natsserver import NatsCluster, NatsServer, start_nats_server, wait_for

BUCKET = "fo"


@pytest.mark.cluster
async def test_a_get_is_answered_by_a_follower_while_the_leader_is_gone(
    nats_cluster: NatsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(failover, "LEADER_READ_S", 0.3)  # well before the survivors can elect a leader (>= 3 s)
    nc = await nats.connect(servers=nats_cluster.urls, connect_timeout=2)
    try:
        js = nc.jetstream(timeout=1.0)
        kv = await wait_for(lambda: ensure_kv(js, BUCKET, replicas=3), 20, ignore=(Exception,))
        await wait_for(lambda: kv.put("k", b"v1"), 20, ignore=(Exception,))
        leader = await wait_for(lambda: nats_cluster.leaders().get(f"KV_{BUCKET}"), 10)
        await wait_for(lambda: len(nats_cluster.direct_getters(f"KV_{BUCKET}")) == 3, 10)
        survivor = next(node for node in nats_cluster.nodes if node.name != leader)
        await nc.close()
        # connected to a survivor only, so the connection itself outlives the kill
        nc = await nats.connect(servers=[survivor.url], connect_timeout=2)
        js = nc.jetstream(timeout=1.0)
        kv = await ensure_kv(js, BUCKET, replicas=3)
        leader_only = await js.key_value(BUCKET)
        leader_only._direct = False  # nats-py's own get, as it was before buckets allowed direct gets

        nats_cluster.node(leader).kill()
        with pytest.raises(nats.errors.TimeoutError):
            await leader_only.get("k")  # the control: nobody answers for a leaderless bucket
        entry = await kv.get("k")
        assert entry.value == b"v1"
    finally:
        await nc.close()


async def test_an_existing_bucket_is_brought_to_allow_direct_gets(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.create_key_value(bucket=BUCKET)  # made as before: no direct gets
        assert not (await js.stream_info(f"KV_{BUCKET}")).config.allow_direct
        kv = await ensure_kv(js, BUCKET)
        assert (await js.stream_info(f"KV_{BUCKET}")).config.allow_direct
        await kv.put("k", b"v")
        assert (await kv.get("k")).value == b"v"
        await ensure_kv(js, "fresh")
        assert (await js.stream_info("KV_fresh")).config.allow_direct
    finally:
        await nc.close()


async def test_a_user_that_may_not_update_streams_uses_an_old_bucket_as_it_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    users = (
        "authorization { users = [ {user: admin, password: a}, "
        '{user: agent, password: b, permissions: {publish: {deny: ["$JS.API.STREAM.UPDATE.>"]}}} ] }'
    )
    with start_nats_server(tmp_path / "nats", extra_config=users) as server:
        admin = await nats.connect(f"nats://admin:a@127.0.0.1:{server.port}")
        agent = await nats.connect(f"nats://agent:b@127.0.0.1:{server.port}", error_cb=_ignore)
        try:
            await admin.jetstream().create_key_value(bucket=BUCKET)  # made before buckets allowed direct gets
            kv = await ensure_kv(agent.jetstream(timeout=1.0), BUCKET)
            assert "does not allow direct gets and could not be changed" in caplog.text
            assert not (await admin.jetstream().stream_info(f"KV_{BUCKET}")).config.allow_direct
            await kv.put("k", b"v")
            assert (await kv.get("k")).value == b"v"  # read from the leader, as before
            await ensure_kv(admin.jetstream(), BUCKET)  # the admin (`nats-mcp provision`) brings it over
            assert (await admin.jetstream().stream_info(f"KV_{BUCKET}")).config.allow_direct
        finally:
            await agent.close()
            await admin.close()


async def _ignore(_exc: Exception) -> None:
    """The refused update is reported to the error callback as a permissions violation: expected here."""
