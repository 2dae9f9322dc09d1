"""Test boundary of a server process that crashes mid-traffic: answers audited calls, printing each answered seq.

    python -m tests.support.audit_crash URL DURABILITY DIR

Prints its chain id, then ``<seq>`` for each call it answered (after ``settle``, as the guard answers), as fast as
it can, until killed. The test SIGKILLs it and compares what it was answered for with what the stream holds.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.audit.log import AuditLog
from nats_mcp.security.audit.streamsink import StreamSink
from tests.support.env import connected


async def run(url: str, durability: str, tmp: Path) -> None:
    async with connected(tmp, url) as conn:
        log = AuditLog([StreamSink(conn)], transport="http", durability="sync" if durability == "sync" else "async")
        print(log.chain, flush=True)
        i = 0
        while True:
            record = log.append(AuditEvent("tool_call", tool="warp_channels_send", outcome="ok", arguments={"i": i}))
            assert record is not None
            assert await log.settle()
            print(record.seq, flush=True)
            await asyncio.sleep(0)
            i += 1


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
