"""JetStream runs out of room under an agent: a nats-server with 1 MB of file storage. A channel the server has no
room for, and work piling up until the store is full, answer ``limit_exceeded`` with the reason — never a crash,
never a misleading "still starting" — every other tool keeps working, and nothing stored before is damaged: every
acknowledged item is claimed and completed, and once they are, there is room again."""

from __future__ import annotations

from pathlib import Path

import pytest

from nats_mcp.api.tools.base import ERROR_META
from tests.support.natsserver import NatsServer
from tests.support.stdio import agent, err, ok
from tests.support.work_tools import claim, register

pytestmark = pytest.mark.chaos

CONFIG = """
channels:
  - {name: roadmap, description: "fits", max_bytes: 65536}
  - {name: archive, description: "reserves more than the server has", max_bytes: 10485760}
"""


async def test_a_full_store_answers_limit_exceeded_and_damages_nothing(tmp_path: Path) -> None:
    config = tmp_path / "nats-mcp.yaml"
    config.write_text(CONFIG)
    with NatsServer(tmp_path / "nats", jetstream_limits="max_file_store: 1MB").start() as server:
        env = {"NATS_MCP_CONFIG": str(config), "NATS_MCP_WORK_MAX_BYTES": "524288"}  # the queue's room: 512 KB
        async with agent(tmp_path, server, "a", "team-full", **env) as a:
            await register(a, "python")  # the services started although one channel could not be made
            await ok(a, "warp_handle_set", handle="a")
            await ok(a, "warp_channels_send", channel="roadmap", message="still room here")
            assert await err(a, "warp_channels_send", channel="archive", message="no room") == "limit_exceeded"

            # fill the store with work: each item carries ~16 KB of context
            stored: list[str] = []
            refusal = None
            for n in range(200):
                result = await a.call_tool(
                    "warp_work_broadcast",
                    {
                        "taskId": f"t-{n}",
                        "description": "fill",
                        "requiredCapability": "python",
                        "contextData": {"blob": "x" * 16_000},
                    },
                )
                if result.is_error:
                    refusal = (result.meta or {})[ERROR_META]
                    break
                stored.append((result.structured_content or {})["workItemId"])
            assert refusal is not None, "1 MB never filled up"
            assert refusal["code"] == "limit_exceeded" and "no room" in refusal["message"], refusal
            assert len(stored) > 5

            # the rest still works, and everything acknowledged is intact: claimed and completed, in order
            page = await ok(a, "warp_channels_read", channel="roadmap")
            assert [m["message"] for m in page["messages"]] == ["still room here"]
            for item_id in stored:
                item = await claim(a, timeout=2000)
                assert item is not None and item["id"] == item_id and len(item["contextData"]["blob"]) == 16_000
                await ok(a, "warp_work_complete", workItemId=item_id)

            # the work queue gave its room back
            again = await ok(
                a, "warp_work_broadcast", taskId="after", description="fits again", requiredCapability="python"
            )
            assert again["workItemId"]
