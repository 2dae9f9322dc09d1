"""Benchmark boundary of the Python floor: the cheapest MCP server Python can be over stdio, no MCP SDK per call.

    python bench/floor_server.py --nats none               # stdio JSON-RPC only: Python's floor for any tool call
    python bench/floor_server.py --nats publish --url URL  # plus the NATS work every one of our calls does

Issue 22 asks, where a target stays out of reach, for the measurement that proves the floor. This server is that
floor: plain asyncio reading lines from the stdin pipe, ``json.loads`` / ``json.dumps``, ``os.write`` to stdout,
one request answered at a time (the benches' clients are sequential). It answers what the SDK's Python ``Client``
sends (2026-07-28: ``server/discover``, then requests with the ``_meta`` envelope, which it does not check;
``initialize`` and ``ping`` too, for an older client) with our tools' own definitions (names, input and output
schemas, read once at start-up from ``nats_mcp``'s tool table) and, per tool, a canned result of the shape ours
returns (text content and a ``structuredContent`` that matches the tool's output schema, checked once at start-up,
and our ``serverInfo`` stamp), so the client pays the same reply parsing and output validation as with ours.

``--nats none``: no NATS at all. ``--nats publish``: every call seals an audit record (a small JSON object) that a
background task publishes to JetStream and waits for its acknowledgement, one at a time in order, as our audit
log does in its default (``async``) durability, the answer not waiting for it; ``warp_channels_send`` also
publishes the message itself and waits for its acknowledgement before answering (its sequence is in the answer).
Nothing else: no guard, no validation of arguments, no hash chain, no work-queue or KV round trips, no reading of
a channel (``warp_channels_read`` answers a canned 50-message page): a lower bound of what a Python server doing
our calls pays, so a floor below Warp proves a target out of reach, and a floor above it proves nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

HANDLE = "bench-floor"
GUID = "0123456789abcdef0123456789abcdef"
ITEM = "0b8f5e2c-6f4e-4d7e-9a51-2d8c3f1e7a60"
STAMP_TIME = "2026-12-07T20:40:49.314Z"
PAGE = 50
VERSION = "2026-07-28"
LEGACY_VERSION = "2025-11-25"


def canned_results() -> dict[str, dict[str, Any]]:
    """Per tool, the ``text`` and ``structured`` content ours answers the benches' calls with (from a real session)."""
    item = {
        "id": ITEM,
        "taskId": "t-1",
        "capability": "bench",
        "boundary": None,
        "description": "bench task",
        "priority": 5,
        "offeredBy": GUID,
        "offeredAt": STAMP_TIME,
        "attempts": 1,
        "deadline": None,
        "contextData": None,
        "scope": None,
        "leaseExpiresAt": STAMP_TIME,
        "dependsOn": None,
    }
    message = {"channel": "parallel-work", "id": ITEM, "sequence": 1, "handle": HANDLE, "senderGuid": GUID}
    page = [
        {**message, "sequence": i, "message": "benchmark message: " + "x" * 80, "timestamp": STAMP_TIME, "scope": None}
        for i in range(1, PAGE + 1)
    ]
    for entry in page:
        del entry["channel"]
    lines = "\n".join(f"#{m['sequence']} **{HANDLE}** (`{GUID}`) {STAMP_TIME}: {m['message']}" for m in page)
    claimed = (
        "Claimed. It is yours until the lease runs out: finish with warp_work_complete, give it back with "
        f"warp_work_fail.\n\n**t-1** · `{ITEM}` · priority 5 · attempt 1\nOffered by `{GUID}` at {STAMP_TIME}\n"
        f"Lease until {STAMP_TIME} (renew with warp_work_progress)\n\nbench task"
    )
    queued = f"Work item `{ITEM}` (t-1) queued for **bench** at priority 5. Follow it with warp_work_get."
    out: dict[str, tuple[str, dict[str, Any]]] = {
        "warp_handle_get": (f"Your handle: **{HANDLE}** (agent `{GUID}`)", {"handle": HANDLE, "agentGuid": GUID}),
        "warp_channels_send": (
            f"Sent to #parallel-work as **{HANDLE}** (sequence 1).",
            {**message, "timestamp": STAMP_TIME},
        ),
        "warp_channels_read": (
            f"#parallel-work, {PAGE} messages:\n{lines}",
            {"channel": "parallel-work", "messages": page, "nextCursor": None, "hasMore": False, "total": PAGE},
        ),
        "warp_work_broadcast": (
            queued,
            {k: item[k] for k in ("taskId", "capability", "boundary", "priority", "deadline")}
            | {"workItemId": ITEM, "status": "pending"},
        ),
        "warp_work_claim": (claimed, {"workItem": item}),
        "warp_work_complete": (f"Completed `{ITEM}`.", {"workItemId": ITEM, "status": "completed"}),
    }
    return {name: {"text": text, "structured": structured} for name, (text, structured) in out.items()}


class Answers:
    """What the server says, built once at start-up (the SDK and nats_mcp are imported here only)."""

    def __init__(self) -> None:
        import jsonschema  # type: ignore[import-untyped]  # no stubs installed

        from nats_mcp.api.about import DESCRIPTION, ICONS, NAME, TITLE, WEBSITE_URL
        from nats_mcp.api.server import ToolTable

        results = canned_results()
        tools = [t for t in ToolTable("warp_").tools if t.name in results]
        info: dict[str, Any] = {"name": NAME + "-floor", "title": TITLE, "version": "0.0.1", "description": DESCRIPTION}
        info |= {"websiteUrl": WEBSITE_URL, "icons": [i.model_dump(mode="json", exclude_none=True) for i in ICONS]}
        self.stamp = {"io.modelcontextprotocol/serverInfo": info}
        self.results: dict[str, dict[str, Any]] = {}
        for tool in tools:  # a canned result that its own schema refuses would make the client raise: fail here
            canned = results[tool.name]
            jsonschema.validate(canned["structured"], tool.output_schema or {})
            self.results[tool.name] = {
                "content": [{"type": "text", "text": canned["text"]}],
                "isError": False,
                "resultType": "complete",
                "structuredContent": canned["structured"],
                "_meta": self.stamp,
            }
        listed = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
        self.fixed: dict[str, dict[str, Any]] = {
            "server/discover": {
                "cacheScope": "private",
                "capabilities": {"tools": {"listChanged": False}},
                "resultType": "complete",
                "supportedVersions": [VERSION],
                "ttlMs": 0,
                "_meta": self.stamp,
            },
            "tools/list": {"cacheScope": "private", "resultType": "complete", "tools": listed, "ttlMs": 0},
            "initialize": {
                "protocolVersion": LEGACY_VERSION,
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": info,
            },
            "ping": {},
        }
        self.fixed["tools/list"]["_meta"] = self.stamp


class Audit:
    """``--nats publish``: one acknowledged JetStream publish per call, written in order by one background task."""

    def __init__(self, js: Any, subject: str) -> None:
        self.js, self.subject = js, subject
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.seq = 0
        self.task = asyncio.create_task(self._write())

    def record(self, tool: str) -> None:
        self.seq += 1
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        record = {"time": now, "kind": "tool_call", "transport": "stdio", "tool": tool, "outcome": "ok"}
        self.queue.put_nowait(json.dumps(record | {"seq": self.seq}).encode())

    async def _write(self) -> None:
        while True:
            await self.js.publish(self.subject, await self.queue.get())


async def serve(mode: str, url: str, prefix: str) -> None:
    answers = Answers()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    audit: Audit | None = None
    js: Any = None
    nc: Any = None
    if mode == "publish":
        import nats
        from nats.js.api import StreamConfig

        nc = await nats.connect(url)
        js = nc.jetstream()
        stream = prefix.upper().replace("-", "_")
        subjects = [f"{prefix}.audit", f"{prefix}.chan.>"]
        await js.add_stream(StreamConfig(name=stream, subjects=subjects))
        audit = Audit(js, f"{prefix}.audit")
    results, fixed = answers.results, answers.fixed
    send_subject = f"{prefix}.chan.parallel-work"
    out = sys.stdout.fileno()
    while line := await reader.readline():
        request = json.loads(line)
        rid = request.get("id")
        if rid is None:  # a notification: nothing to answer
            continue
        method = request.get("method")
        answer: dict[str, Any]
        if method == "tools/call":
            params = request["params"]
            name = params["name"]
            result = results.get(name)
            if result is None:
                error = {"code": -32602, "message": f"Unknown tool: {name}"}
                answer = {"jsonrpc": "2.0", "id": rid, "error": error}
            else:
                if audit is not None:
                    audit.record(name)
                    if name == "warp_channels_send":
                        ack = await js.publish(send_subject, params["arguments"]["message"].encode())
                        structured = result["structuredContent"] | {"sequence": ack.seq}
                        result = result | {"structuredContent": structured}
                answer = {"jsonrpc": "2.0", "id": rid, "result": result}
        elif method in fixed:
            answer = {"jsonrpc": "2.0", "id": rid, "result": fixed[method]}
        else:
            answer = {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "Method not found"}}
        data = (json.dumps(answer, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        while data:
            data = data[os.write(out, data) :]
    if audit is not None:
        audit.task.cancel()
    if nc is not None:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--nats", choices=["none", "publish"], default="none", help="the NATS work of each call")
    parser.add_argument("--url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--prefix", default="floor", help="subject prefix (and stream name) of --nats publish")
    args = parser.parse_args()
    asyncio.run(serve(args.nats, args.url, args.prefix))


if __name__ == "__main__":
    main()
