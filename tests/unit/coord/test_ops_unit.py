"""Pure logic of the nats_* group: what counts as the server's own, subject checks, payload slices, policy blocks."""

from __future__ import annotations

import base64

import pytest

from nats_mcp.api.tools.coordination import needs_of
from nats_mcp.api.tools.natsops import OPS_TOOLS
from nats_mcp.bus.layout import APIKEYS_BUCKET, AUDIT_STREAM, DIRECTORY_BUCKET, Layout, audit_subject
from nats_mcp.coord.errors import Forbidden, InvalidArgument
from nats_mcp.coord.natsops import guard as check
from nats_mcp.coord.natsops.service import preview
from nats_mcp.security.needs import NatsAccess
from nats_mcp.security.policy import BUILTIN, Policy, PolicyError, parse_policy
from nats_mcp.security.principal import Principal

L = Layout("team-a")
NATS_TOOLS = {spec.suffix: spec.needs for spec in OPS_TOOLS}


def test_every_stream_and_bucket_the_layout_names_is_internal() -> None:
    streams = [L.channel_stream("general"), L.inbox_stream, L.work_stream, L.events_stream, L.dlq_stream, AUDIT_STREAM]
    buckets = [L.registry_bucket, L.identity_bucket, L.work_state_bucket, DIRECTORY_BUCKET, APIKEYS_BUCKET]
    for name in streams + [f"KV_{b}" for b in buckets]:
        assert check.internal_stream(name), name
        with pytest.raises(Forbidden):
            check.writable_stream(name)
    for bucket in buckets:
        assert check.internal_bucket(bucket), bucket
        with pytest.raises(Forbidden):
            check.writable_bucket(bucket)
    for name in ("ORDERS", "KV_config", "nmcp", "nmcpx_y"):
        assert not check.internal_stream(name) and check.writable_stream(name) == name


def test_the_servers_subjects_and_natss_own_are_not_writable() -> None:
    subjects = [
        L.channel_subject("general"),
        L.inbox_subject("a" * 32),
        L.work_subject("python", 5),
        L.deadline_due_subject("0" * 8 + "-0000-0000-0000-" + "0" * 12),
        L.dlq_subject(),
        audit_subject("b" * 32, "_INBOX_w"),
        "$JS.API.STREAM.DELETE.X",
        "$KV.cfg.k",
        "$SYS.REQ.SERVER.PING",
        "_INBOX.abc.def",
    ]
    for s in subjects:
        assert check.protected_subject(s) is not None, s
    # Patterns that could capture any of them are refused too.
    for pattern in (">", "*.>", "*.team-a.chan.*", "nmcp.*.inbox.*", "_INBOX.>", "*"):
        assert check.protected_subject(pattern) is not None, pattern
    assert check.protected_subject("replies.x", inbox_prefix="replies") is not None
    for ok in ("orders.created", "orders.*", "orders.>", "nmcp", "nmcpx.y", "app.nmcp.x"):
        assert check.protected_subject(ok) is None, ok


@pytest.mark.parametrize(
    ("value", "wildcards", "valid"),
    [
        ("a.b", False, True),
        ("a.*", False, False),
        ("a.*", True, True),
        ("a.>", True, True),
        ("a.>.b", True, False),
        ("a.b*", True, False),
        ("a..b", True, False),
        ("a b", True, False),
        (".a", True, False),
        ("", True, False),
    ],
)
def test_subject_syntax(value: str, wildcards: bool, valid: bool) -> None:
    if valid:
        assert check.subject(value, wildcards=wildcards) == value
    else:
        with pytest.raises(InvalidArgument):
            check.subject(value, wildcards=wildcards)


def test_preview_slices_text_and_binary() -> None:
    assert preview(b"hello", 0, 100).model_dump() == {
        "encoding": "utf-8",
        "data": "hello",
        "size": 5,
        "offset": 0,
        "truncated": False,
        "nextOffset": None,
    }
    binary = preview(b"\x00\x01ab", 0, 100)
    assert binary.encoding == "base64" and base64.b64decode(binary.data) == b"\x00\x01ab"
    assert preview(b"\x00\x01", 0, 100, "hex").data == "0001"
    cut = preview("é".encode() * 60, 0, 65)  # 120 bytes; a 65-byte slice ends inside the 33rd 'é'
    assert cut.encoding == "utf-8" and cut.nextOffset == 64 and cut.truncated
    tail = preview("é".encode() * 60, 64, 65)
    assert cut.data + tail.data == "é" * 60 and tail.nextOffset is None and tail.truncated
    assert preview(b"", 0, 10).data == ""
    with pytest.raises(InvalidArgument):
        preview(b"abc", 4, 10)


def test_policy_table_matches_the_tools() -> None:
    """Every nats_* tool declares one NatsAccess need, its checked arguments exist, and write tools need writes."""
    for spec in OPS_TOOLS:
        (declared,) = [n for n in spec.needs if isinstance(n, NatsAccess)]
        need, checks = declared.access, declared.checks
        assert (need == "write") == (not spec.read_only), spec.suffix
        for field, _kind in checks:
            assert field in spec.args.model_fields, (spec.suffix, field)


def _principal(*roles: str) -> Principal:
    return Principal(subject="u", issuer="local", method="local", roles=frozenset(roles))


def test_the_builtin_policy_grants_no_nats_tool() -> None:
    policy = Policy(BUILTIN)
    me = _principal("agent")
    for tool in NATS_TOOLS:
        assert not policy.tool_allowed(me, tool, needs_of(tool))
        assert not policy.decide(me, tool, "ns", {"stream": "X", "subject": "a", "bucket": "b"}, needs_of(tool)).allowed
    assert policy.tool_allowed(me, "channels_send", needs_of("channels_send"))


def test_nats_blocks_grant_read_and_write_separately() -> None:
    policy = Policy(
        parse_policy("""
roles:
  reader: {tools: ["nats_*"], namespaces: ["*"], nats: {streams: {read: ["ORD*"]}}}
  writer: {tools: ["nats_publish"], namespaces: ["*"], nats: {subjects: {write: ["orders.*"]}}}
  named-only: {tools: ["nats_*"], namespaces: ["*"]}
""")
    )
    reader, writer = _principal("reader"), _principal("writer")
    assert policy.decide(reader, "nats_stream_info", "ns", {"stream": "ORDERS"}, needs_of("nats_stream_info")).allowed
    assert not policy.decide(reader, "nats_stream_info", "ns", {"stream": "PAY"}, needs_of("nats_stream_info")).allowed
    assert not policy.tool_allowed(reader, "nats_publish", needs_of("nats_publish")) and not policy.tool_allowed(
        reader, "nats_server_info", needs_of("nats_server_info")
    )
    assert policy.decide(writer, "nats_publish", "ns", {"subject": "orders.new"}, needs_of("nats_publish")).allowed
    assert not policy.decide(writer, "nats_publish", "ns", {"subject": "pay.new"}, needs_of("nats_publish")).allowed
    assert not policy.tool_allowed(writer, "nats_stream_list", needs_of("nats_stream_list"))  # not named by its tools
    assert not any(policy.tool_allowed(_principal("named-only"), t, needs_of(t)) for t in NATS_TOOLS)
    scope = policy.nats_scope(reader)
    assert scope.allows("streams", "read", "ORDERS") and not scope.allows("streams", "write", "ORDERS")


def test_nats_globs_with_character_classes_are_refused() -> None:
    for glob in ("orders.?", "orders.[ab]"):
        with pytest.raises(PolicyError, match="only use"):
            parse_policy(f"roles: {{r: {{nats: {{subjects: {{write: ['{glob}']}}}}}}}}")
