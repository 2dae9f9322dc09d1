"""Integration tests of the stream writes of bus/publish.py against a real nats-server: ``store`` and the KV writes
through ``LeanJetStream.publish`` give and raise what nats-py's ``js.publish`` does (a sequence, a dedupe, a refused
expectation, no stream; a KV create of an existing key, of a deleted one, an update at the wrong revision), and the
same inside a recording trace span (where nats-py's own ``publish`` sends it, for the span's child)."""

from __future__ import annotations

import contextlib

import pytest
from nats.js.api import KeyValueConfig, StreamConfig
from nats.js.errors import KeyWrongLastSequenceError
from opentelemetry.sdk.trace import TracerProvider

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.errors import JetStreamError, NoStreamResponse
from nats_mcp.bus.publish import EXPECT_LAST_SUBJECT_SEQ, LeanJetStream, store


@pytest.mark.parametrize("traced", [False, True])
async def test_store_answers_and_refuses_as_js_publish_does(nats_conn: NatsConnection, traced: bool) -> None:
    js = nats_conn.jetstream
    assert isinstance(js, LeanJetStream)
    await js.add_stream(StreamConfig(name="STORE", subjects=["store.>"], duplicate_window=60))
    await js.add_stream(StreamConfig(name="OTHER", subjects=["other.>"]))
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("call") if traced else contextlib.nullcontext():
        first = await store(js, "store.a", b"1", stream="STORE", msg_id="m-1")
        assert await store(js, "store.a", b"1 again", stream="STORE", msg_id="m-1") == first  # a repeat: dropped
        second = await store(js, "store.a", b"2", stream="STORE")
        assert second == first + 1
        assert (await js.get_msg("STORE", second)).data == b"2"
        ok = await store(js, "store.b", b"x", stream="STORE", headers={EXPECT_LAST_SUBJECT_SEQ: "0"})
        with pytest.raises(JetStreamError) as refused:  # the subject holds a message now: the expectation fails
            await store(js, "store.b", b"y", stream="STORE", headers={EXPECT_LAST_SUBJECT_SEQ: "0"})
        assert refused.value.err_code == 10071
        with pytest.raises(JetStreamError) as wrong:  # stored by another stream than expected: refused, not stored
            await store(js, "other.x", b"z", stream="STORE")
        assert wrong.value.err_code == 10060
        with pytest.raises(NoStreamResponse):  # nobody stores this subject
            await store(js, "nowhere.x", b"z", stream="STORE", timeout=2)
        assert (await js.stream_info("STORE")).state.last_seq == ok
        assert (await js.stream_info("OTHER")).state.messages == 0
        kv = await js.create_key_value(KeyValueConfig(bucket="leankv", history=5))
        created = await kv.create("k", b"v1")
        with pytest.raises(KeyWrongLastSequenceError):
            await kv.create("k", b"again")  # it exists
        with pytest.raises(KeyWrongLastSequenceError):
            await kv.update("k", b"v2", last=created + 7)
        updated = await kv.update("k", b"v2", last=created)
        assert (await kv.get("k")).value == b"v2" and updated > created
        await kv.delete("k")
        recreated = await kv.create("k", b"v3")  # a deleted key may be created again (at its marker's revision)
        assert (await kv.get("k")).value == b"v3" and recreated > updated
        assert await kv.put("p", b"x") > recreated
