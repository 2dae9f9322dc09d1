"""The nats_* operations tools against a real nats-server, through the guard and a real policy: every tool's happy
path, denied names, write tools refused to the read-only role, the server's own resources refused, bounded output."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig, StreamConfig

from nats_mcp.api.tools.coordination import needs_of
from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.layout import APIKEYS_BUCKET, Layout
from nats_mcp.coord.natsops.service import OpsService
from tests.support.natsserver import NatsServer
from tests.support.ops import OpsHarness

R, W = "nats-reader", "nats-operator"
LAYOUT = Layout("team-ops")


@pytest.fixture
async def ops(nats_conn: NatsConnection) -> OpsHarness:
    js = nats_conn.jetstream
    await js.add_stream(StreamConfig(name="APP_ORDERS", subjects=["app.orders.>"]))
    await js.add_stream(StreamConfig(name="OTHER", subjects=["other.>"]))
    # The server's own resources, named by the layout (as its coordination services create them).
    await js.add_stream(StreamConfig(name=LAYOUT.work_stream, subjects=[LAYOUT.work_subjects]))
    await js.add_stream(StreamConfig(name=LAYOUT.inbox_stream, subjects=[LAYOUT.inbox_subjects]))
    await js.create_key_value(KeyValueConfig(bucket=LAYOUT.registry_bucket))
    for i in range(3):
        await js.publish(f"app.orders.{i}", json.dumps({"order": i}).encode(), headers={"Trace": f"t{i}"})
    await js.publish(LAYOUT.inbox_subject("a" * 32), b"a private DM")
    cfg = await js.create_key_value(KeyValueConfig(bucket="cfg", history=5))
    await cfg.put("feature.x", b"on")
    await cfg.put("feature.x", b"off")
    await cfg.put("limits.rate", b"100")
    await (await js.create_key_value(KeyValueConfig(bucket="secret"))).put("k", b"v")
    return OpsHarness(nats_conn)


async def test_read_tools_happy_path(ops: OpsHarness) -> None:
    info = await ops.ok(R, "nats_server_info")
    assert info["server"]["version"].startswith("2.") and info["server"]["jetstream"] is True
    assert info["account"]["streams"] >= 4

    listed = await ops.ok(R, "nats_stream_list")
    names = {s["name"]: s for s in listed["streams"]}
    assert set(names) == {"APP_ORDERS", LAYOUT.work_stream, LAYOUT.inbox_stream}  # not OTHER, not the KV streams
    assert names["APP_ORDERS"]["messages"] == 3 and not names["APP_ORDERS"]["internal"]
    assert names[LAYOUT.inbox_stream]["internal"] and listed["total"] == 3 and listed["nextCursor"] is None

    stream = (await ops.ok(R, "nats_stream_info", stream="APP_ORDERS"))["stream"]
    assert stream["subjects"] == ["app.orders.>"] and stream["lastSeq"] == 3 and stream["maxMsgs"] == -1

    first = (await ops.ok(R, "nats_stream_get_message", stream="APP_ORDERS", seq=1))["message"]
    assert first["subject"] == "app.orders.0" and first["headers"]["Trace"] == "t0"
    assert first["payload"] == {
        "encoding": "utf-8",
        "data": '{"order": 0}',
        "size": 12,
        "offset": 0,
        "truncated": False,
        "nextOffset": None,
    }
    last = (await ops.ok(R, "nats_stream_get_message", stream="APP_ORDERS", lastBySubject="app.orders.2"))["message"]
    assert last["seq"] == 3
    assert await ops.err(R, "nats_stream_get_message", stream="APP_ORDERS", seq=99) == "not_found"

    await ops.conn.jetstream.add_consumer("APP_ORDERS", durable_name="billing", filter_subject="app.orders.>")
    consumers = (await ops.ok(R, "nats_consumer_list", stream="APP_ORDERS"))["consumers"]
    assert [(c["name"], c["numPending"]) for c in consumers] == [("billing", 3)]
    consumer = (await ops.ok(R, "nats_consumer_info", stream="APP_ORDERS", name="billing"))["consumer"]
    assert consumer["filterSubjects"] == ["app.orders.>"] and consumer["durable"]

    buckets = (await ops.ok(R, "nats_kv_list"))["buckets"]
    assert {b["bucket"]: b["internal"] for b in buckets} == {"cfg": False, LAYOUT.registry_bucket: True}
    entry = (await ops.ok(R, "nats_kv_get", bucket="cfg", key="feature.x"))["entry"]
    assert entry["payload"]["data"] == "off" and entry["operation"] == "PUT"
    old = (await ops.ok(R, "nats_kv_get", bucket="cfg", key="feature.x", revision=entry["revision"] - 1))["entry"]
    assert old["payload"]["data"] == "on"
    history = (await ops.ok(R, "nats_kv_history", bucket="cfg", key="feature.x"))["entries"]
    assert [h["payload"]["data"] for h in history] == ["off", "on"]  # newest first
    assert (await ops.ok(R, "nats_kv_keys", bucket="cfg"))["keys"] == ["feature.x", "limits.rate"]
    assert (await ops.ok(R, "nats_kv_keys", bucket="cfg", filter="limits.>"))["keys"] == ["limits.rate"]


async def test_write_tools_happy_path(ops: OpsHarness) -> None:
    nc = ops.conn.client
    got: asyncio.Queue[Msg] = asyncio.Queue()
    sub = await nc.subscribe("app.events", cb=got.put)

    async def echo(msg: Msg) -> None:
        await msg.respond(b"pong:" + msg.data)

    service = await nc.subscribe("svc.echo", cb=echo)
    try:
        sent = await ops.ok(W, "nats_publish", subject="app.events", payload="hello", headers={"X-Id": "1"})
        assert sent == {"subject": "app.events", "bytes": 5}
        msg = await asyncio.wait_for(got.get(), 5)
        assert msg.data == b"hello" and msg.headers == {"X-Id": "1"}
        binary = base64.b64encode(b"\x00\xff").decode()
        await ops.ok(W, "nats_publish", subject="app.events", payload=binary, encoding="base64")
        assert (await asyncio.wait_for(got.get(), 5)).data == b"\x00\xff"

        reply = await ops.ok(W, "nats_request", subject="svc.echo", payload="ping", timeoutMs=2000)
        assert reply["payload"]["data"] == "pong:ping"
        assert await ops.err(W, "nats_request", subject="svc.nobody", payload="x", timeoutMs=500) == "not_found"
    finally:
        await sub.unsubscribe()
        await service.unsubscribe()

    created = (await ops.ok(W, "nats_stream_create", name="NEW_LOGS", subjects=["app.logs.*"], maxMsgs=100))["stream"]
    assert created["name"] == "NEW_LOGS" and created["maxMsgs"] == 100
    assert await ops.ok(W, "nats_stream_create", name="NEW_LOGS", subjects=["app.logs.*"], maxMsgs=100)  # idempotent
    assert await ops.err(W, "nats_stream_create", name="NEW_LOGS", subjects=["app.logs.*"], maxMsgs=5) == "conflict"
    updated = (
        await ops.ok(
            W,
            "nats_stream_update",
            name="NEW_LOGS",
            maxMsgs=10,
            maxAgeSeconds=3600,
            discard="new",
            subjects=["app.logs.*", "app.audit"],
        )
    )["stream"]
    assert updated["maxMsgs"] == 10 and updated["maxAgeSeconds"] == 3600 and updated["discard"] == "new"
    assert updated["subjects"] == ["app.logs.*", "app.audit"] and updated["maxBytes"] == -1  # the rest kept
    assert await ops.err(W, "nats_stream_update", name="NEW_LOGS", subjects=["billing.x"]) == "forbidden"
    for i in range(4):
        await ops.conn.jetstream.publish(f"app.logs.{i % 2}", b"line")
    purged = (await ops.ok(W, "nats_stream_purge", name="NEW_LOGS", subject="app.logs.0"))["stream"]
    assert purged["messages"] == 2
    assert (await ops.ok(W, "nats_stream_purge", name="NEW_LOGS", keep=1))["stream"]["messages"] == 1

    consumer = await ops.ok(W, "nats_consumer_create", stream="NEW_LOGS", name="tail", deliverPolicy="last")
    assert consumer["consumer"]["name"] == "tail" and consumer["consumer"]["deliverPolicy"] == "last"
    assert await ops.ok(W, "nats_consumer_delete", stream="NEW_LOGS", name="tail") == {"deleted": True}
    assert await ops.err(W, "nats_consumer_info", stream="NEW_LOGS", name="tail") == "not_found"
    assert await ops.ok(W, "nats_stream_delete", name="NEW_LOGS") == {"deleted": True}
    assert await ops.err(W, "nats_stream_info", stream="NEW_LOGS") == "not_found"

    put = await ops.ok(W, "nats_kv_put", bucket="cfg", key="feature.y", value="on")
    assert put["revision"] > 0
    assert (await ops.ok(W, "nats_kv_get", bucket="cfg", key="feature.y"))["entry"]["payload"]["data"] == "on"
    await ops.ok(W, "nats_kv_delete", bucket="cfg", key="feature.y")
    assert await ops.err(W, "nats_kv_get", bucket="cfg", key="feature.y") == "not_found"
    await ops.ok(W, "nats_kv_delete", bucket="cfg", key="limits.rate", purge=True)
    assert (await ops.ok(W, "nats_kv_keys", bucket="cfg"))["keys"] == ["feature.x"]


async def test_names_outside_the_allow_lists_are_denied(ops: OpsHarness) -> None:
    assert await ops.err(R, "nats_stream_info", stream="OTHER") == "forbidden"
    assert await ops.err(R, "nats_stream_get_message", stream="OTHER", seq=1) == "forbidden"
    assert await ops.err(R, "nats_consumer_list", stream="OTHER") == "forbidden"
    assert await ops.err(R, "nats_kv_get", bucket="secret", key="k") == "forbidden"
    assert await ops.err(R, "nats_kv_keys", bucket="secret") == "forbidden"
    # the subject of a last-by-subject read is checked against subjects.read too, and so is a message's own subject
    assert await ops.err(R, "nats_stream_get_message", stream="APP_ORDERS", lastBySubject="other.x") == "forbidden"
    js = ops.conn.jetstream
    await js.add_stream(StreamConfig(name="APP_MIXED", subjects=["app.mixed", "hidden.mixed"]))
    await js.publish("app.mixed", b"visible")
    await js.publish("hidden.mixed", b"not for readers")
    shown = await ops.ok(R, "nats_stream_get_message", stream="APP_MIXED", seq=1)
    assert shown["message"]["payload"]["data"] == "visible"
    assert await ops.err(R, "nats_stream_get_message", stream="APP_MIXED", seq=2) == "forbidden"
    # JetStream control headers would turn a publish into a purge (rollup) or a message elsewhere (schedules)
    assert await ops.err(W, "nats_publish", subject="app.x", payload="x", headers={"Nats-Rollup": "all"}) == "forbidden"
    assert await ops.ok(W, "nats_publish", subject="app.x", payload="x", headers={"Nats-Msg-Id": "1"})
    assert await ops.err(W, "nats_publish", subject="billing.x", payload="x") == "forbidden"
    assert await ops.err(W, "nats_stream_create", name="NEW_X", subjects=["app.x", "billing.>"]) == "forbidden"
    assert await ops.err(W, "nats_stream_delete", name="OTHER") == "forbidden"
    assert await ops.err(W, "nats_kv_put", bucket="secret", key="k", value="x") == "forbidden"
    assert "NEW_X" not in {s["name"] for s in (await ops.ok(W, "nats_stream_list"))["streams"]}
    assert (await ops.conn.jetstream.stream_info("OTHER")).config.name == "OTHER"


async def test_write_tools_are_refused_to_the_read_only_role(ops: OpsHarness) -> None:
    writes: dict[str, dict[str, Any]] = {
        "nats_publish": {"subject": "app.x", "payload": "x"},
        "nats_request": {"subject": "app.x", "payload": "x"},
        "nats_stream_create": {"name": "APP_NEW", "subjects": ["app.new"]},
        "nats_stream_update": {"name": "APP_ORDERS", "maxMsgs": 1},
        "nats_stream_purge": {"name": "APP_ORDERS"},
        "nats_stream_delete": {"name": "APP_ORDERS"},
        "nats_consumer_create": {"stream": "APP_ORDERS", "name": "c"},
        "nats_consumer_delete": {"stream": "APP_ORDERS", "name": "c"},
        "nats_kv_put": {"bucket": "cfg", "key": "k", "value": "v"},
        "nats_kv_delete": {"bucket": "cfg", "key": "feature.x"},
    }
    for tool, args in writes.items():
        assert await ops.err(R, tool, **args) == "forbidden", tool
        assert not ops.guard.visible(ops.principal(R), tool, needs_of(tool)), tool
    assert (await ops.conn.jetstream.stream_info("APP_ORDERS")).state.messages == 3
    # The built-in role (tools: ["*"], no nats block) gets none of the group, read or write.
    assert await ops.err("agent", "nats_stream_list") == "forbidden"
    assert await ops.err("agent", "nats_server_info") == "forbidden"


async def test_the_servers_own_resources_are_refused(ops: OpsHarness) -> None:
    work, inbox, registry = LAYOUT.work_stream, LAYOUT.inbox_stream, LAYOUT.registry_bucket
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("nats_stream_delete", {"name": work}),
        ("nats_stream_purge", {"name": inbox}),
        ("nats_stream_update", {"name": work, "maxMsgs": 1}),
        ("nats_stream_create", {"name": "nmcp_team-ops_evil", "subjects": ["app.evil"]}),
        ("nats_stream_create", {"name": "NEW_CAPTURE", "subjects": ["nmcp.>"]}),
        ("nats_stream_create", {"name": "NEW_ALL", "subjects": [">"]}),
        ("nats_stream_delete", {"name": f"KV_{registry}"}),
        ("nats_consumer_create", {"stream": inbox, "name": "spy"}),
        ("nats_kv_put", {"bucket": registry, "key": "x", "value": "{}"}),
        ("nats_kv_delete", {"bucket": registry, "key": "x", "purge": True}),
        ("nats_publish", {"subject": LAYOUT.channel_subject("general"), "payload": "forged"}),
        ("nats_publish", {"subject": "_INBOX.abc", "payload": "forged reply"}),
        ("nats_request", {"subject": LAYOUT.inbox_subject("b" * 32), "payload": "x"}),
    ]
    for tool, args in attempts:
        assert await ops.err(W, tool, **args) == "forbidden", (tool, args)
    # Contents of the server's streams and buckets are not shown either (owner-only inboxes, registry, API keys).
    assert await ops.err(W, "nats_stream_get_message", stream=inbox, seq=1) == "forbidden"
    assert await ops.err(W, "nats_kv_get", bucket=registry, key="x") == "forbidden"
    assert await ops.err(W, "nats_kv_keys", bucket=APIKEYS_BUCKET) == "forbidden"
    # Nothing changed.
    js = ops.conn.jetstream
    assert (await js.stream_info(inbox)).state.messages == 1
    assert (await js.stream_info(work)).config.max_msgs == -1
    names = {s["name"] for s in (await ops.ok(W, "nats_stream_list", limit=100))["streams"]}
    assert not names & {"nmcp_team-ops_evil", "NEW_CAPTURE", "NEW_ALL"}


async def test_outputs_are_bounded_with_cursors(ops: OpsHarness) -> None:
    js = ops.conn.jetstream
    for i in range(5):
        await js.add_stream(StreamConfig(name=f"APP_S{i}", subjects=[f"app.s{i}"]))
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = await ops.ok(R, "nats_stream_list", limit=2, **({"cursor": cursor} if cursor else {}))
        assert len(page["streams"]) <= 2 and page["total"] == 8
        seen += [s["name"] for s in page["streams"]]
        cursor = page["nextCursor"]
        assert page["hasMore"] == (cursor is not None)
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 8
    assert await ops.err(R, "nats_kv_list", cursor=cursor or "bad") == "invalid_cursor"
    assert await ops.err(R, "nats_stream_list", limit=1000) == "limit_exceeded"  # above nats_ops.max_page

    # A payload over the preview size comes in slices, each with the offset to read on.
    big = bytes(range(256)) * 40  # 10 KiB, binary
    await js.publish("app.orders.big", big)
    got, offset, slices = b"", 0, 0
    while True:
        m = (await ops.ok(R, "nats_stream_get_message", stream="APP_ORDERS", seq=4, offset=offset))["message"]
        p = m["payload"]
        assert p["encoding"] == "base64" and p["size"] == len(big) and len(base64.b64decode(p["data"])) <= 4096
        got += base64.b64decode(p["data"])
        slices += 1
        if p["nextOffset"] is None:
            break
        assert p["truncated"]
        offset = p["nextOffset"]
    assert got == big and slices == 3
    hexed = (await ops.ok(R, "nats_stream_get_message", stream="APP_ORDERS", seq=4, encoding="hex"))["message"]
    assert bytes.fromhex(hexed["payload"]["data"]) == big[:4096]

    # Text sliced inside a multi-byte character is cut at a character boundary.
    text = "é" * 3000  # 6000 bytes
    await js.publish("app.orders.text", text.encode())
    first = (await ops.ok(R, "nats_stream_get_message", stream="APP_ORDERS", seq=5))["message"]["payload"]
    rest = await ops.ok(R, "nats_stream_get_message", stream="APP_ORDERS", seq=5, offset=first["nextOffset"])
    assert first["encoding"] == "utf-8" and first["data"] + rest["message"]["payload"]["data"] == text

    # KV keys and history page too.
    kv = await js.key_value("cfg")
    for i in range(5):
        await kv.put(f"k{i}", str(i).encode())
    keys_page = await ops.ok(R, "nats_kv_keys", bucket="cfg", limit=3)
    assert keys_page["keys"] == ["feature.x", "k0", "k1"] and keys_page["hasMore"]
    rest_keys = await ops.ok(R, "nats_kv_keys", bucket="cfg", limit=3, cursor=keys_page["nextCursor"])
    assert rest_keys["keys"] == ["k2", "k3", "k4"]
    assert await ops.err(R, "nats_kv_keys", bucket="cfg", filter="k.>", cursor=keys_page["nextCursor"]) == (
        "invalid_cursor"
    )
    hist = await ops.ok(R, "nats_kv_history", bucket="cfg", key="feature.x", limit=1)
    assert [e["payload"]["data"] for e in hist["entries"]] == ["off"] and hist["hasMore"]
    older = await ops.ok(R, "nats_kv_history", bucket="cfg", key="feature.x", limit=1, cursor=hist["nextCursor"])
    assert [e["payload"]["data"] for e in older["entries"]] == ["on"] and older["nextCursor"] is None


async def test_bad_input_gets_a_clear_error_and_changes_nothing(ops: OpsHarness) -> None:
    assert await ops.err(W, "nats_publish", subject="app.*", payload="x") == "invalid_argument"
    assert await ops.err(W, "nats_publish", subject="app..x", payload="x") == "invalid_argument"
    assert await ops.err(W, "nats_publish", subject="app.x", payload="%%", encoding="base64") == "invalid_argument"
    assert await ops.err(W, "nats_publish", subject="app.x", payload="x" * 70_000) == "limit_exceeded"
    assert await ops.err(W, "nats_publish", subject="app.x", payload="x", headers={"a b": "c"}) == "invalid_argument"
    assert await ops.err(R, "nats_stream_get_message", stream="APP_ORDERS") == "invalid_argument"  # no seq, no subject
    assert await ops.err(W, "nats_stream_create", name="APP.BAD", subjects=["app.bad"]) == "invalid_argument"
    assert await ops.err(W, "nats_stream_create", name="APP_BAD", subjects=["app.>.x"]) == "invalid_argument"
    assert await ops.err(W, "nats_kv_put", bucket="cfg", key="bad key", value="x") == "invalid_argument"
    assert await ops.err(W, "nats_request", subject="app.x", payload="x", timeoutMs=60_000) == "limit_exceeded"
    assert await ops.err(W, "nats_stream_update", name="APP_ORDERS") == "invalid_argument"
    assert await ops.err(W, "nats_stream_info", stream="APP_ORDERS", extra=1) == "invalid_argument"
    assert (await ops.conn.jetstream.stream_info("APP_ORDERS")).state.messages == 3
    assert "APP_BAD" not in {s["name"] for s in (await ops.ok(W, "nats_stream_list", limit=100))["streams"]}


async def test_server_info_adds_the_monitoring_endpoint_when_configured(
    nats_conn: NatsConnection, nats_server: NatsServer
) -> None:
    assert nats_server.monitor_url is not None
    settings = nats_conn.settings.model_copy(deep=True)
    settings.nats_ops.monitor_url = nats_server.monitor_url
    ops = OpsHarness(nats_conn)
    ops.ops = OpsService(nats_conn, settings)
    info = await ops.ok(R, "nats_server_info")
    assert info["monitor"]["connections"] >= 1 and info["monitor"]["jetstream"]["streams"] == 0
    settings.nats_ops.monitor_url = "http://127.0.0.1:1"  # nothing listens: reported, not fatal
    ops.ops = OpsService(nats_conn, settings)
    info = await ops.ok(R, "nats_server_info")
    assert "error" in info["monitor"] and info["server"]["version"]


async def test_a_deleted_and_recreated_bucket_is_seen_as_it_is_now(ops: OpsHarness) -> None:
    js = ops.conn.jetstream
    assert (await ops.ok(R, "nats_kv_get", bucket="cfg", key="limits.rate"))["entry"]["payload"]["data"] == "100"
    await js.delete_key_value("cfg")
    assert await ops.err(R, "nats_kv_get", bucket="cfg", key="limits.rate") == "not_found"
    kv = await js.create_key_value(KeyValueConfig(bucket="cfg", direct=False))
    await kv.put("limits.rate", b"7")
    assert (await ops.ok(R, "nats_kv_get", bucket="cfg", key="limits.rate"))["entry"]["payload"]["data"] == "7"


async def test_a_scan_stopped_at_its_cap_says_so(ops: OpsHarness) -> None:
    kv = await ops.conn.jetstream.key_value("cfg")
    await asyncio.gather(*(kv.put(f"bulk.{'a' if i < 110 else 'b'}.{i}", b"x") for i in range(120)))
    settings = ops.conn.settings.model_copy(deep=True)
    settings.nats_ops.max_scan = 100
    ops.ops = OpsService(ops.conn, settings)
    capped = await ops.ok(R, "nats_kv_keys", bucket="cfg", filter="bulk.>", limit=100)
    assert len(capped["keys"]) == 100 and capped["total"] is None
    narrower = await ops.ok(R, "nats_kv_keys", bucket="cfg", filter="bulk.b.*", limit=100)
    assert narrower["keys"] == [f"bulk.b.{i}" for i in range(110, 120)] and narrower["total"] == 10
