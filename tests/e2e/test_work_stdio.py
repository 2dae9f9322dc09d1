"""Boundary of the work and DLQ tools as agents meet them: real `nats-mcp serve` processes over stdio, nats-server."""

from __future__ import annotations

import contextlib
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.natsserver import NatsServer, wait_for
from tests.support.stdio import agent, err, ok
from tests.support.work_tools import CAP, broadcast, claim, dlq, queues, register

OTHER_GUID = "0123456789abcdef0123456789abcdef"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def _serve_pid(project: Path) -> int:
    """The pid of this test's `nats-mcp serve` child that runs in ``project`` (Linux /proc)."""
    marker = f"MCP_PROJECT_PATH={project}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and marker in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
    raise AssertionError(f"no serve process for {project}")


# ---- 1. claim order, identity of the offerer, exactly-once completion, only the claimer settles -------


@pytest.mark.slow
async def test_priority_order_offered_by_and_exactly_once_completion(tmp_path: Path, nats_server: NatsServer) -> None:
    async with (
        agent(tmp_path, nats_server, "a", "team-w1") as a,
        agent(tmp_path, nats_server, "b", "team-w1") as b,
    ):
        guid_a = await register(a)
        guid_b = await register(b, CAP)
        assert guid_a != guid_b

        # offeredBy is the server's to write: an argument trying to set it is refused, nothing queued
        code = await err(
            a, "warp_work_broadcast", taskId="x", description="x", requiredCapability=CAP, offeredBy=guid_b
        )
        assert code == "invalid_argument"
        assert await queues(a) == {}

        low = await broadcast(a, "low", priority=2)
        high = await broadcast(a, "high", priority=9)
        mid = await broadcast(a, "mid", priority=5, contextData={"file": "x.py"})
        assert len({low, high, mid}) == 3

        item = await claim(b, timeout=2000)
        assert item is not None
        assert (item["id"], item["taskId"], item["priority"]) == (high, "high", 9)
        assert item["attempts"] == 1
        assert item["offeredBy"] == guid_a
        assert item["capability"] == CAP and item["description"] == "do high"
        lease = datetime.fromisoformat(item["leaseExpiresAt"])
        assert lease > datetime.now(UTC)
        assert datetime.fromisoformat(item["offeredAt"]) <= datetime.now(UTC)
        assert await queues(a, CAP) == {CAP: (2, 1, 0)}

        # only the claimer may progress, complete or fail it
        assert await err(a, "warp_work_complete", workItemId=high) == "forbidden"
        assert await err(a, "warp_work_progress", workItemId=high, progress=50) == "forbidden"
        assert await err(a, "warp_work_fail", workItemId=high, reason="not mine") == "forbidden"
        renewed = await ok(b, "warp_work_progress", workItemId=high, progress=50, note="half way")
        assert renewed["workItemId"] == high
        assert datetime.fromisoformat(renewed["leaseExpiresAt"]) >= lease

        done = await ok(b, "warp_work_complete", workItemId=high, result={"ok": True})
        assert done == {"workItemId": high, "status": "completed"}
        assert await err(b, "warp_work_complete", workItemId=high) == "conflict"
        assert await err(b, "warp_work_fail", workItemId=high, reason="late") == "conflict"
        assert await err(a, "warp_work_complete", workItemId=high) == "conflict"
        assert await err(b, "warp_work_complete", workItemId=UNKNOWN_ID) == "not_found"

        # the rest, in priority order, in one batch; the completed one is never handed out again
        batch = (await ok(b, "warp_work_claim_batch", capability=CAP, max=5, timeout=0))["workItems"]
        assert [(i["id"], i["priority"]) for i in batch] == [(mid, 5), (low, 2)]
        assert batch[0]["contextData"] == {"file": "x.py"}
        assert all(i["offeredBy"] == guid_a and i["attempts"] == 1 for i in batch)
        for i in batch:
            await ok(b, "warp_work_complete", workItemId=i["id"])
        assert await claim(b) is None
        assert await queues(a, CAP) == {CAP: (0, 0, 0)}
        assert await dlq(a) == []


# ---- 2. refusals: each with its code, none leaves anything queued ---------------------------------------


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
async def test_refused_calls_leave_nothing_queued(tmp_path: Path, nats_server: NatsServer) -> None:
    async with (
        agent(tmp_path, nats_server, "a", "team-w2") as a,
        agent(tmp_path, nats_server, "n", "team-w2") as newcomer,
    ):
        # before registering: no broadcast, no claim
        assert await err(newcomer, "warp_work_claim", capability=CAP, timeout=0) == "not_registered"
        assert await err(newcomer, "warp_work_broadcast", taskId="t", description="d", requiredCapability=CAP) == (
            "not_registered"
        )
        await register(a)  # no capabilities
        assert await err(a, "warp_work_claim", capability=CAP, timeout=0) == "forbidden"
        assert await err(a, "warp_work_claim_batch", capability=CAP, timeout=0) == "forbidden"

        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        bad: list[tuple[dict[str, Any], str]] = [
            ({"requiredCapability": "Bad.Cap"}, "invalid_name"),
            ({"requiredCapability": "a.>"}, "invalid_name"),
            ({"requiredCapability": "py thon"}, "invalid_name"),
            ({"priority": 11}, "invalid_argument"),  # input schema (pydantic) validation
            ({"priority": 0}, "invalid_argument"),
            ({"priority": "high"}, "invalid_argument"),
            ({"deadline": past}, "invalid_argument"),
            ({"deadline": "next tuesday"}, "invalid_argument"),
            ({"taskId": ""}, "invalid_argument"),
            ({"description": "x" * (8 * 1024 + 1)}, "limit_exceeded"),
            ({"contextData": {"blob": "x" * (16 * 1024 + 1)}}, "limit_exceeded"),
            ({"unknownField": 1}, "invalid_argument"),
        ]
        for override, expected in bad:
            args = {"taskId": "t", "description": "d", "requiredCapability": CAP, **override}
            assert await err(a, "warp_work_broadcast", **args) == expected, override

        # claim/list arguments out of range, and bad ids
        assert await err(a, "warp_work_claim", capability="Bad.Cap", timeout=0) == "invalid_name"
        assert await err(a, "warp_work_claim", capability=CAP, timeout=30001) == "invalid_argument"
        assert await err(a, "warp_work_list", capability=CAP, minPriority=8, maxPriority=3) == "invalid_argument"
        assert await err(a, "warp_work_list", capability=CAP, limit=0) == "invalid_argument"
        assert await err(a, "warp_work_list", capability=CAP, cursor="garbage!") == "invalid_cursor"
        assert await err(a, "warp_work_complete", workItemId="not-a-uuid") == "invalid_argument"
        assert await err(a, "warp_work_progress", workItemId=UNKNOWN_ID) == "not_found"

        # nothing anywhere, and the server still serves
        assert await queues(a) == {}
        listed = await ok(a, "warp_work_list", capability=CAP)
        assert (listed["items"], listed["hasMore"], listed["nextCursor"]) == ([], False, None)
        assert await dlq(a) == []
        await broadcast(a, "fine")
        assert await queues(a) == {CAP: (1, 0, 0)}


# ---- 3. fail, backoff, dead-letter, DLQ retry and discard --------------------------------------------------


@pytest.mark.slow
async def test_fail_backoff_dead_letter_retry_and_discard(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {"NATS_MCP_WORK_RETRY_BACKOFF_MS": "1000", "NATS_MCP_WORK_MAX_ATTEMPTS": "3"}
    async with (
        agent(tmp_path, nats_server, "a", "team-w3", **env) as a,
        agent(tmp_path, nats_server, "b", "team-w3", **env) as b,
    ):
        guid_a = await register(a)
        guid_b = await register(b, CAP)
        flaky = await broadcast(a, "flaky", priority=4)

        # recoverable: released for a retry after the backoff, with the attempt counted
        first = await claim(b, timeout=2000)
        assert first is not None and (first["id"], first["attempts"]) == (flaky, 1)
        failed = await ok(b, "warp_work_fail", workItemId=flaky, reason="boom 1")
        assert failed == {"workItemId": flaky, "status": "retrying", "attempts": 1}
        assert await err(b, "warp_work_complete", workItemId=flaky) == "conflict"  # released: claim it again
        assert await claim(b) is None  # still backing off
        second = await claim(b, timeout=10_000)
        assert second is not None and (second["id"], second["attempts"]) == (flaky, 2)
        assert second["offeredBy"] == guid_a

        # unrecoverable: dead-lettered at once, with the reason and the error history
        failed = await ok(b, "warp_work_fail", workItemId=flaky, reason="boom 2", recoverable=False)
        assert failed == {"workItemId": flaky, "status": "dead_lettered", "attempts": 2}
        assert await err(b, "warp_work_complete", workItemId=flaky) == "conflict"
        [entry] = await dlq(a)
        assert (entry["id"], entry["reason"], entry["attempts"]) == (flaky, "unrecoverable", 2)
        assert (entry["workItem"]["id"], entry["workItem"]["taskId"]) == (flaky, "flaky")
        assert entry["workItem"]["offeredBy"] == guid_a and entry["workItem"]["priority"] == 4
        assert len(entry["errors"]) == 2
        assert "boom 1" in entry["errors"][0] and guid_b in entry["errors"][0]
        assert "boom 2" in entry["errors"][1]
        assert datetime.fromisoformat(entry["failedAt"]) <= datetime.now(UTC)
        assert [e["id"] for e in await dlq(a, CAP)] == [flaky]
        assert await dlq(a, "rust") == []
        assert await queues(a) == {CAP: (0, 0, 1)}
        assert await claim(b) is None

        # retry keeps the attempts: the third is the last, so even a recoverable fail dead-letters it
        assert await ok(a, "warp_dlq_retry", itemId=flaky) == {"itemId": flaky, "requeued": True}
        assert await dlq(a) == []
        assert await err(a, "warp_dlq_retry", itemId=flaky) == "not_found"
        third = await claim(b, timeout=5000)
        assert third is not None and (third["id"], third["attempts"]) == (flaky, 3)
        failed = await ok(b, "warp_work_fail", workItemId=flaky, reason="boom 3")
        assert failed == {"workItemId": flaky, "status": "dead_lettered", "attempts": 3}
        [entry] = await dlq(a)
        assert (entry["reason"], entry["attempts"]) == ("max_attempts", 3)
        assert "boom 3" in entry["errors"][-1]

        # retry with reset starts counting again
        assert (await ok(a, "warp_dlq_retry", itemId=flaky, resetAttempts=True))["requeued"] is True
        fourth = await claim(b, timeout=5000)
        assert fourth is not None and (fourth["id"], fourth["attempts"]) == (flaky, 1)
        await ok(b, "warp_work_fail", workItemId=flaky, reason="give up", recoverable=False)

        # discard deletes for good
        assert await ok(a, "warp_dlq_discard", itemId=flaky) == {"itemId": flaky, "discarded": True}
        assert await dlq(a) == []
        assert await queues(a) == {CAP: (0, 0, 0)}
        assert await claim(b) is None
        assert await err(a, "warp_dlq_discard", itemId=flaky) == "not_found"
        assert await err(a, "warp_dlq_retry", itemId=flaky) == "not_found"
        assert await err(a, "warp_dlq_discard", itemId=UNKNOWN_ID) == "not_found"
        # ids are checked by the domain (the schema pattern is advice): a malformed one is invalid_argument
        assert await err(a, "warp_dlq_discard", itemId="not-a-uuid") == "invalid_argument"
        assert await err(a, "warp_dlq_retry", itemId=flaky.upper()) == "invalid_argument"
        assert await err(a, "warp_dlq_list", capability="Bad.Cap") == "invalid_name"


# ---- 4. a claimer that crashes: its last lease runs out and the item is dead-lettered by a live process's mover


@pytest.mark.slow
async def test_crashed_claimer_item_reaches_the_dlq(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {"NATS_MCP_WORK_ACK_TIMEOUT_MS": "1000", "NATS_MCP_WORK_MAX_ATTEMPTS": "1"}
    async with (
        agent(tmp_path, nats_server, "a", "team-w4", **env) as a,
        agent(tmp_path, nats_server, "b", "team-w4", **env) as b,
    ):
        guid_a = await register(a)
        await register(b, CAP)
        orphan = await broadcast(a, "orphan", priority=6)
        # and an item nobody claims before its deadline: the server's timer plus the mover dead-letter it too
        soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
        late = await broadcast(a, "late", "rust", deadline=soon)
        async with agent(tmp_path, nats_server, "crasher", "team-w4", **env) as crasher:
            guid_c = await register(crasher, CAP)
            item = await claim(crasher, timeout=2000)
            assert item is not None and (item["id"], item["attempts"]) == (orphan, 1)
            assert await claim(b) is None  # held by the crasher's lease
            os.kill(_serve_pid(tmp_path / "crasher"), signal.SIGKILL)

        async def dead_lettered() -> dict[str, dict[str, Any]] | None:
            entries = {e["id"]: e for e in await dlq(a)}
            return entries if len(entries) == 2 else None

        entries = await wait_for(dead_lettered, 30, interval=0.25, message="the items never reached the DLQ")
        entry = entries[orphan]
        assert (entry["reason"], entry["attempts"]) == ("max_attempts", 1)
        assert entry["workItem"]["offeredBy"] == guid_a
        assert any("lease expired" in e and guid_c in e for e in entry["errors"]), entry["errors"]
        assert (entries[late]["reason"], entries[late]["attempts"]) == ("deadline_passed", 0)
        assert await queues(b) == {CAP: (0, 0, 1), "rust": (0, 0, 1)}
        assert await claim(b) is None


# ---- 5. listing in claim order without claiming, cursors bound to filters, status of every queue -------


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
async def test_list_pages_in_claim_order_and_status_per_capability(tmp_path: Path, nats_server: NatsServer) -> None:
    async with (
        agent(tmp_path, nats_server, "a", "team-w5") as a,
        agent(tmp_path, nats_server, "b", "team-w5") as b,
    ):
        await register(a)
        await register(b, CAP, "docs")
        priorities = [3, 7, 7, 1, 10, 3, 7]
        ids = [await broadcast(a, f"t{i}", priority=p) for i, p in enumerate(priorities)]
        order = [ids[i] for i in sorted(range(len(ids)), key=lambda i: (-priorities[i], i))]
        docs = [await broadcast(a, f"d{i}", "docs") for i in range(3)]
        soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        later = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
        due = await broadcast(a, "due", "rust", deadline=soon)
        await broadcast(a, "undated", "rust")

        # pages of 3: claim order, no repeat, nothing missing
        seen: list[str] = []
        sizes: list[int] = []
        cursors: list[str] = []
        args: dict[str, Any] = {"capability": CAP, "limit": 3}
        while True:
            page = await ok(b, "warp_work_list", **args)
            sizes.append(len(page["items"]))
            assert page["total"] == 7
            assert all(i["attempts"] == 0 and i.get("leaseExpiresAt") is None for i in page["items"])
            seen += [i["id"] for i in page["items"]]
            if not page["hasMore"]:
                assert page["nextCursor"] is None
                break
            cursors.append(page["nextCursor"])
            args["cursor"] = page["nextCursor"]
        assert sizes == [3, 3, 1]
        assert seen == order
        high = await ok(b, "warp_work_list", capability=CAP, minPriority=7)
        assert [i["id"] for i in high["items"]] == order[:4] and high["total"] == 4
        dated = await ok(a, "warp_work_list", capability="rust", deadlineBefore=later)
        assert [i["id"] for i in dated["items"]] == [due]
        assert (await ok(a, "warp_work_list", capability="rust", deadlineAfter=later))["items"] == []

        # a cursor belongs to its tool and filters
        cursor = cursors[0]
        assert await err(b, "warp_work_list", capability=CAP, limit=3, minPriority=2, cursor=cursor) == "invalid_cursor"
        assert await err(b, "warp_work_list", capability="docs", limit=3, cursor=cursor) == "invalid_cursor"
        assert await err(b, "warp_dlq_list", cursor=cursor) == "invalid_cursor"
        again = await ok(b, "warp_work_list", capability=CAP, limit=3, cursor=cursor)
        assert [i["id"] for i in again["items"]] == order[3:6]

        # listing claimed nothing: the first claim is the head of the list, which then shows its lease
        assert await queues(a, CAP) == {CAP: (7, 0, 0)}
        head = await claim(b, timeout=2000)
        assert head is not None and head["id"] == order[0]
        listed = (await ok(a, "warp_work_list", capability=CAP, limit=1))["items"]
        assert listed[0]["id"] == order[0] and listed[0]["leaseExpiresAt"] and listed[0]["attempts"] == 1

        # two docs items dead-lettered; the DLQ pages too, and its cursor is bound to its filter
        for item in (await ok(b, "warp_work_claim_batch", capability="docs", max=2, timeout=0))["workItems"]:
            await ok(b, "warp_work_fail", workItemId=item["id"], reason="no", recoverable=False)
        page = await ok(a, "warp_dlq_list", limit=1)
        assert [e["id"] for e in page["items"]] == docs[:1] and page["hasMore"] and page["total"] == 2
        assert await err(a, "warp_dlq_list", limit=1, capability=CAP, cursor=page["nextCursor"]) == "invalid_cursor"
        assert await err(a, "warp_work_list", capability="docs", cursor=page["nextCursor"]) == "invalid_cursor"
        rest = await ok(a, "warp_dlq_list", limit=1, cursor=page["nextCursor"])
        assert [e["id"] for e in rest["items"]] == docs[1:2]
        assert (rest["hasMore"], rest["nextCursor"], rest["total"]) == (False, None, 2)

        # status: every capability, pending / in flight / dead-lettered
        status = (await ok(a, "warp_work_queue_status"))["queues"]
        assert [q["capability"] for q in status] == ["docs", CAP, "rust"]
        assert {q["capability"]: (q["pending"], q["inFlight"], q["deadLettered"]) for q in status} == {
            "docs": (1, 0, 2),
            CAP: (6, 1, 0),
            "rust": (2, 0, 0),
        }
        assert all(q["oldestPendingSeconds"] is not None and q["oldestPendingSeconds"] >= 0 for q in status)
        assert await queues(b, "docs") == {"docs": (1, 0, 2)}
        assert await queues(b, "nothing-here") == {"nothing-here": (0, 0, 0)}


# ---- 6. namespaces do not share queues --------------------------------------------------------------------


@pytest.mark.slow
async def test_another_namespace_sees_no_queue_and_claims_nothing(tmp_path: Path, nats_server: NatsServer) -> None:
    async with (
        agent(tmp_path, nats_server, "a", "team-w6") as a,
        agent(tmp_path, nats_server, "b", "team-w6") as b,
        agent(tmp_path, nats_server, "x", "elsewhere") as x,
    ):
        await register(a)
        await register(b, CAP)
        await register(x, CAP)
        queued = await broadcast(a, "ours", priority=8)
        dead = await broadcast(a, "doomed")
        taken = await claim(b, timeout=2000)
        assert taken is not None and taken["id"] == queued
        doomed = await claim(b, timeout=2000)
        assert doomed is not None and doomed["id"] == dead
        await ok(b, "warp_work_fail", workItemId=dead, reason="x", recoverable=False)

        assert await queues(x) == {}
        assert await claim(x, timeout=500) is None
        assert (await ok(x, "warp_work_list", capability=CAP))["items"] == []
        assert await dlq(x) == []
        assert await err(x, "warp_work_complete", workItemId=queued) == "not_found"
        assert await err(x, "warp_dlq_retry", itemId=dead) == "not_found"
        assert await err(x, "warp_dlq_discard", itemId=dead) == "not_found"
        # their own queue is separate: an item broadcast there is not ours
        mine = await broadcast(x, "theirs")
        assert await queues(a) == {CAP: (0, 1, 1)}
        got = await claim(x, timeout=2000)
        assert got is not None and got["id"] == mine
        assert await claim(b) is None

        # and ours is intact
        assert [e["id"] for e in await dlq(a)] == [dead]
        await ok(b, "warp_work_complete", workItemId=queued)
        assert await queues(a) == {CAP: (0, 0, 1)}
