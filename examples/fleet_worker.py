"""An example agent for `nats-mcp fleet`: claims work for its capabilities over MCP, works, completes, until stopped.

It is what a real coding agent does, minus the thinking: it starts `nats-mcp serve` over stdio (the MCP Python SDK
client), registers with the capabilities the fleet gave it, then claims (waiting up to half a second), "works" for
``WORK_MS`` milliseconds, completes, and claims again. SIGTERM (the fleet stopping it) ends it after the item in
hand. The fleet passes everything in the environment:

- ``NATS_URL``, ``NATS_MCP_NAMESPACE`` (and ``NATS_MCP_CONFIG`` or credentials variables, inherited): where to work;
- ``LOOMINAL_AGENT_ID``: the agent GUID the fleet chose (so it can find the agent in the registry);
- ``NATS_MCP_FLEET_CAPABILITIES``: comma-separated capabilities to claim;
- ``WORK_MS`` (optional): how long each item takes; ``FLEET_WORKER_LOG`` (optional): a file to append
  ``<item id> <agent guid>`` to per completed item (the end-to-end test counts completions there).

Run by hand: ``NATS_URL=nats://127.0.0.1:4222 NATS_MCP_FLEET_CAPABILITIES=python python examples/fleet_worker.py``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters, stdio_client


def _serve_command() -> str:
    beside = Path(sys.executable).parent / "nats-mcp"
    return str(beside) if beside.exists() else shutil.which("nats-mcp") or "nats-mcp"


async def _call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    if result.is_error or not isinstance(result.structured_content, dict):
        text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
        raise RuntimeError(f"{tool}: {text}")
    return result.structured_content


async def main() -> int:
    caps = [c for c in os.environ.get("NATS_MCP_FLEET_CAPABILITIES", "").split(",") if c]
    if not caps:
        print("fleet_worker: NATS_MCP_FLEET_CAPABILITIES is empty", file=sys.stderr)
        return 2
    work_s = int(os.environ.get("WORK_MS", "0")) / 1000
    done_log = os.environ.get("FLEET_WORKER_LOG")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    params = StdioServerParameters(command=_serve_command(), args=["serve"], env=dict(os.environ))
    async with Client(stdio_client(params, errlog=sys.stderr)) as client:  # type: ignore[arg-type]
        me = (await _call(client, "warp_registry_register", agentType="fleet-worker", capabilities=caps))["agent"]
        while not stop.is_set():
            for cap in caps:
                item = (await _call(client, "warp_work_claim", capability=cap, timeout=500))["workItem"]
                if item is None:
                    continue
                if work_s:
                    await asyncio.sleep(work_s)  # the "work"
                await _call(client, "warp_work_complete", workItemId=item["id"], result={"by": me["guid"]})
                if done_log:
                    with open(done_log, "a", encoding="utf-8") as f:  # noqa: ASYNC230 - one short line
                        f.write(f"{item['id']} {me['guid']}\n")
        await _call(client, "warp_registry_deregister")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
