"""Boundary of replication as an operator meets it: ``nats.replicas`` on a 3-node JetStream cluster applies to every
stream and KV bucket the server makes, and brings existing ones to the configured number."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.env import connected
from tests.support.natsserver import NatsCluster, wait_for
from tests.support.stdio import agent, ok
from tests.support.work_tools import broadcast, register

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


async def replicas_of(tmp_path: Path, urls: str) -> dict[str, int]:
    """Every stream of the deployment (ours: nmcp_*, KV_nmcp*) and its replica count."""
    async with connected(tmp_path / "probe", urls) as conn:
        streams = await conn.jetstream.streams_info()
    return {
        s.config.name: s.config.num_replicas or 1
        for s in streams
        if s.config.name and (s.config.name.startswith("nmcp") or s.config.name.startswith("KV_nmcp"))
    }


async def use_everything(tmp_path: Path, cluster: NatsCluster, name: str, replicas: str) -> None:
    """One agent process that touches every kind of resource: registry, identity, channel, inbox, work, DLQ, audit."""
    urls = ",".join(cluster.urls)
    env = {"NATS_URL": urls, "NATS_MCP_NATS_REPLICAS": replicas}
    async with agent(tmp_path, cluster.nodes[0], name, "team-r3", **env) as client:
        guid = await register(client, "python")
        await ok(client, "warp_handle_set", handle=name)
        await ok(client, "warp_channels_send", channel="roadmap", message=f"from {name}")
        await ok(client, "warp_messages_send_direct", recipientGuid=guid, message="note to self")
        await broadcast(client, f"task-{name}")


async def test_replicas_apply_to_every_resource_and_scale_existing_ones(
    tmp_path: Path, nats_cluster: NatsCluster
) -> None:
    urls = ",".join(nats_cluster.urls)
    await use_everything(tmp_path, nats_cluster, "one", "1")
    first = await replicas_of(tmp_path, urls)
    kinds = ("_work", "_workev", "_dlq", "_inbox", "_chan_", "audit", "KV_")
    for kind in kinds:
        assert any(kind in name for name in first), (kind, sorted(first))
    assert set(first.values()) == {1}, first

    # the same deployment, now configured for the cluster: every existing resource is scaled to 3
    await use_everything(tmp_path, nats_cluster, "three", "3")

    async def all_three() -> bool:
        now = await replicas_of(tmp_path, urls)
        return set(first) <= set(now) and set(now.values()) == {3}

    await wait_for(all_three, 30, interval=0.5, message=lambda: "not every stream has 3 replicas")
