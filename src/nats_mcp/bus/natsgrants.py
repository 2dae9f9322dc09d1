"""The grants of each resource of a namespace (channels, inboxes, registry, work, audit, MCP sessions): the
subjects a NATS user needs for it and why. Assembled per role by :func:`nats_mcp.bus.natsperms.build_permissions`,
which also says what those grants cannot enforce.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from nats_mcp.bus.layout import (
    APIKEYS_BUCKET,
    AUDIT_STREAM,
    DIRECTORY_BUCKET,
    PREFIX,
    Layout,
    audit_writer,
    audit_writer_subjects,
)
from nats_mcp.bus.permsdoc import Role, Rule
from nats_mcp.core.names import validate_guid


@dataclass
class Grants:
    """Rules in the order they were added, each subject once (its first reason kept)."""

    pub: dict[str, str] = field(default_factory=dict)
    pub_deny: dict[str, str] = field(default_factory=dict)
    sub: dict[str, str] = field(default_factory=dict)
    sub_deny: dict[str, str] = field(default_factory=dict)
    caveats: list[str] = field(default_factory=list)

    def allow_pub(self, subject: str, reason: str) -> None:
        self.pub.setdefault(subject, reason)

    def allow_sub(self, subject: str, reason: str) -> None:
        self.sub.setdefault(subject, reason)

    def deny_pub(self, subject: str, reason: str) -> None:
        self.pub_deny.setdefault(subject, reason)

    def deny_sub(self, subject: str, reason: str) -> None:
        self.sub_deny.setdefault(subject, reason)

    def caveat(self, text: str) -> None:
        if text not in self.caveats:
            self.caveats.append(text)


def rules(entries: dict[str, str]) -> tuple[Rule, ...]:
    return tuple(Rule(subject, reason) for subject, reason in entries.items())


def inbox_consumer(guid: str) -> str:
    """The durable consumer an isolated agent reads its own inbox through."""
    return f"inbox_{validate_guid(guid)}"


@dataclass(frozen=True)
class Scope:
    """Who the grants are for inside one namespace: one agent (``guid``) or any agent (``None``)."""

    layout: Layout
    api: str
    role: Role
    guid: str | None
    isolate_inbox: bool

    @property
    def ns(self) -> str:
        return self.layout.namespace

    @property
    def who(self) -> str:
        return self.guid if self.guid is not None else "*"


def _kv(lists: Grants, api: str, bucket: str, what: str, writes: Sequence[tuple[str, str]], *, watch: bool) -> None:
    stream = f"KV_{bucket}"
    lists.allow_pub(f"{api}.STREAM.INFO.{stream}", f"open the {what} bucket (it must exist: created by admin)")
    lists.allow_pub(f"{api}.STREAM.MSG.GET.{stream}", f"read keys of the {what} bucket")
    lists.allow_pub(f"{api}.DIRECT.GET.{stream}.$KV.{bucket}.>", f"read keys of the {what} bucket (direct gets on)")
    for key, reason in writes:
        lists.allow_pub(f"$KV.{bucket}.{key}", reason)
    if watch:
        lists.allow_pub(
            f"{api}.CONSUMER.CREATE.{stream}", f"watch the {what} bucket (ordered consumer; its filter is in the body)"
        )
        lists.allow_pub(f"{api}.CONSUMER.INFO.{stream}.*", f"state of the {what} watch")
        lists.allow_pub(f"$JS.FC.{stream}.>", f"flow-control replies of the {what} watch")


def _acks(lists: Grants, stream: str, consumer: str, reason: str, domain: str | None) -> None:
    lists.allow_pub(f"$JS.ACK.{stream}.{consumer}.>", reason)
    if domain is not None:  # the v2 form: $JS.ACK.<domain>.<account hash>.<stream>.<consumer>...
        lists.allow_pub(f"$JS.ACK.{domain}.*.{stream}.{consumer}.>", reason)


def _channels(lists: Grants, scope: Scope, channels: Sequence[str]) -> None:
    lay, api = scope.layout, scope.api
    for channel in channels:
        stream, subject = lay.channel_stream(channel), lay.channel_subject(channel)
        lists.allow_pub(subject, f"send to channel {channel} of {scope.ns}")
        lists.allow_pub(f"{api}.STREAM.INFO.{stream}", f"counters of channel {channel} (reads page from them)")
        lists.allow_pub(f"{api}.DIRECT.GET.{stream}", f"read the history of channel {channel}")
        lists.allow_sub(subject, f"new-message signals of channel {channel}")


def _inbox(lists: Grants, scope: Scope, domain: str | None) -> None:
    lay, api = scope.layout, scope.api
    stream = lay.inbox_stream
    lists.allow_pub(lay.inbox_subjects, f"send DMs to agents of {scope.ns}")
    lists.allow_pub(f"{api}.STREAM.INFO.{stream}", "open the inbox stream; unread counts (per recipient subject)")
    lists.allow_sub(lay.inbox_subject(scope.guid) if scope.guid else lay.inbox_subjects, "new-mail signals")
    stream_wide = (
        (f"{api}.DIRECT.GET.{stream}", "read inbox messages (batched direct get)"),
        (f"{api}.STREAM.MSG.GET.{stream}", "read inbox messages (stream without direct gets)"),
        (f"{api}.STREAM.MSG.DELETE.{stream}", "consume inbox messages (delete by sequence)"),
    )
    if not scope.isolate_inbox:
        for subject, reason in stream_wide:
            lists.allow_pub(subject, f"{reason}: stream-wide, NOT limited to one agent's messages")
        if scope.role == "gateway":
            lists.caveat(
                f"this user reads and consumes every inbox of {scope.ns}: the guard is what keeps each principal to "
                "its own agent's inbox"
            )
        else:
            lists.caveat(
                f"inbox reads are not isolated between agents of {scope.ns}: {api}.DIRECT.GET / STREAM.MSG.GET / "
                f"STREAM.MSG.DELETE.{stream} carry the subject in the payload, so whoever may read its own inbox "
                "that way may read and delete every inbox of the namespace (give --isolate-inbox and run the agent "
                "with nats.isolate_inbox, or serve inboxes through a gateway)"
            )
        return
    assert scope.guid is not None
    for subject, reason in (*stream_wide, (f"{api}.STREAM.PURGE.{stream}", "purge")):
        lists.deny_pub(subject, f"{reason}: stream-wide, would reach other agents' mail")
    lists.deny_pub(f"{api}.DIRECT.GET.{stream}.>", "last-message reads of any inbox subject")
    consumer = inbox_consumer(scope.guid)
    own = lay.inbox_subject(scope.guid)
    lists.allow_pub(
        f"{api}.CONSUMER.CREATE.{stream}.{consumer}.{own}",
        "this agent's inbox consumer; the server refuses a body whose filter differs from the subject's",
    )
    lists.allow_pub(f"{api}.CONSUMER.INFO.{stream}.{consumer}", "unread count of this agent's inbox")
    lists.allow_pub(f"{api}.CONSUMER.MSG.NEXT.{stream}.{consumer}", "read this agent's inbox")
    _acks(lists, stream, consumer, "consume this agent's inbox messages", domain)
    lists.caveat(
        f"isolate_inbox: this agent reads its inbox only through consumer {consumer}; run it with nats.isolate_inbox "
        "true (NATS_MCP_NATS_ISOLATE_INBOX=true), or its reads are refused. It may not delete: consumed mail stays "
        "stored until limits.inbox_max_age and counts towards the inbox's per-agent cap until then. Its mail is "
        "private from other agents only if none of them has the stream-wide inbox grants (--shared-inbox, or no "
        "--agent); gateways have them"
    )


def grant_dm_targets(lists: Grants, api: str, namespaces: Sequence[str]) -> None:
    for namespace in namespaces:
        lay = Layout(namespace)
        lists.allow_pub(lay.inbox_subjects, f"send DMs to agents of {namespace}")
        lists.allow_pub(f"{api}.STREAM.INFO.{lay.inbox_stream}", f"find the inbox stream of {namespace} before sending")


def _registry(lists: Grants, scope: Scope) -> None:
    lay, api, who = scope.layout, scope.api, scope.who
    whom = "this agent's" if scope.guid else "any agent's"
    _kv(
        lists,
        api,
        lay.registry_bucket,
        f"{scope.ns} registry",
        [(who, f"write {whom} registry entry (compare-and-set)")],
        watch=True,
    )
    identity_writes = [
        (f"lease.{who}", f"hold {whom} live-instance lease"),
        (f"handle.{who}", f"set {whom} handle"),
        ("lock.*", "the namespace's maintenance locks (registry GC)"),
    ]
    _kv(lists, api, lay.identity_bucket, f"{scope.ns} identity", identity_writes, watch=True)
    _kv(
        lists,
        api,
        DIRECTORY_BUCKET,
        "shared directory",
        [(f"{scope.ns}.{who}", f"{whom} copy in the shared directory")],
        watch=True,
    )
    if scope.guid is not None:
        lists.caveat(
            "registry GC removes other agents' expired entries, leases, handles and directory copies; this agent may "
            "write only its own keys, so its GC rounds are refused when there is something to collect (run GC from a "
            "gateway or admin process)"
        )


def _work(lists: Grants, scope: Scope, domain: str | None) -> None:
    lay, api, ns = scope.layout, scope.api, scope.ns
    work, events, dlq = lay.work_stream, lay.events_stream, lay.dlq_stream
    lists.allow_pub(lay.work_subjects, f"broadcast work items in {ns}")
    lists.allow_pub(f"{api}.STREAM.INFO.{work}", "open the work stream; queued items per capability")
    lists.allow_pub(f"{api}.CONSUMER.DURABLE.CREATE.{work}.*", "create a capability's queue consumer on first use")
    lists.allow_pub(f"{api}.CONSUMER.LIST.{work}", "in-flight counts per capability")
    lists.allow_pub(f"{api}.CONSUMER.MSG.NEXT.{work}.*", "claim work items (pull)")
    lists.allow_pub(f"{api}.DIRECT.GET.{work}", "list queued items")
    lists.allow_pub(f"{api}.STREAM.MSG.GET.{work}", "load a queued item by sequence")
    lists.allow_pub(f"{api}.STREAM.MSG.DELETE.{work}", "remove a settled item from the queue")
    _acks(lists, work, "*", "renew, release, complete or end a claimed item", domain)
    lists.allow_sub(lay.work_subjects, "new-item signals while a claim waits")
    lists.allow_pub(f"{PREFIX}.{ns}.workev.at.*", "arm a work item's deadline timer (a scheduled message)")
    lists.allow_pub(f"{api}.STREAM.INFO.{events}", "open the work-events stream")
    lists.allow_pub(f"{api}.STREAM.PURGE.{events}", "disarm a deadline timer (purge by subject)")
    lists.allow_pub(f"{api}.CONSUMER.DURABLE.CREATE.{events}.{Layout.MOVER_CONSUMER}", "the work-events consumer")
    lists.allow_pub(f"{api}.CONSUMER.MSG.NEXT.{events}.{Layout.MOVER_CONSUMER}", "take work events")
    _acks(lists, events, Layout.MOVER_CONSUMER, "settle work events", domain)
    lists.allow_pub(lay.dlq_subjects, f"dead-letter work items of {ns}")
    lists.allow_pub(f"{api}.STREAM.INFO.{dlq}", "open the DLQ; counts per capability")
    lists.allow_pub(f"{api}.DIRECT.GET.{dlq}", "list DLQ entries")
    lists.allow_pub(f"{api}.STREAM.MSG.GET.{dlq}", "find a DLQ entry by item id")
    lists.allow_pub(f"{api}.STREAM.MSG.DELETE.{dlq}", "retry or discard a DLQ entry")
    state_writes = [
        ("item.*", "work item state (compare-and-set)"),
        ("requeue.*", "DLQ retry intents"),
        ("sub.*", "submission records (what warp_work_get reads)"),
        ("blocked.*", "items waiting for their dependencies (dependsOn)"),
        ("rdep.*.*", "the reverse dependency index (one key per edge)"),
    ]
    _kv(lists, api, lay.work_state_bucket, f"{ns} work-state", state_writes, watch=False)
    state = f"KV_{lay.work_state_bucket}"
    lists.allow_pub(f"{api}.STREAM.PURGE.{state}", "drop a released item's blocked key (a purge of its subject)")
    lists.allow_pub(f"{api}.DIRECT.GET.{state}", "the first dependent of a settled item (a direct get by subject)")
    for key in ("item.*", "sub.*"):
        lists.allow_sub(f"$KV.{lay.work_state_bucket}.{key}", "a waiting warp_work_get: changes of the item's records")


def _reservations(lists: Grants, scope: Scope) -> None:
    lay, api, ns = scope.layout, scope.api, scope.ns
    table = [(Layout.RESERVATIONS_KEY, "the reservation table (compare-and-set)")]
    _kv(lists, api, lay.reservations_bucket, f"{ns} reservation", table, watch=True)
    lists.allow_sub(lay.reservations_subject, "change signals of the reservation table (the resource's subscribers)")


def grant_audit(lists: Grants, api: str, inbox_prefix: str) -> None:
    writer = audit_writer(inbox_prefix)
    lists.allow_pub(
        audit_writer_subjects(writer),
        f"append audit records to this user's own chains (writer {writer}: the subject proves who wrote a chain)",
    )
    lists.allow_pub(f"{api}.STREAM.INFO.{AUDIT_STREAM}", "open the audit stream (it must exist: created by admin)")
    lists.allow_pub(f"{api}.STREAM.MSG.GET.{AUDIT_STREAM}", "the last record of a chain, to resume it after a restart")
    lists.caveat(
        f"appending audit records needs {api}.STREAM.MSG.GET.{AUDIT_STREAM} (the chain's last record), which reads any "
        "record of the audit stream; deleting or purging records is not granted (and the stream refuses it)"
    )
    lists.caveat(
        f"audit records are attributed to the NATS user, not to a principal: this user writes only chains under writer "
        f"{writer} (`nats-mcp audit verify` names each chain's writer and refuses a chain found under two writers), "
        "but what its records say (principal, tool, outcome) is what its process claims; give each NATS user its own "
        "inbox prefix, or users sharing one share a writer"
    )


def grant_namespace(lists: Grants, scope: Scope, channels: Sequence[str], domain: str | None) -> None:
    _channels(lists, scope, channels)
    _inbox(lists, scope, domain)
    _registry(lists, scope)
    _work(lists, scope, domain)
    _reservations(lists, scope)
    if scope.role == "gateway":
        _sse_events(lists, scope)
        _fleet_bucket(lists, scope, write=False)  # the dashboard's fleet panel


def _sse_events(lists: Grants, scope: Scope) -> None:
    """The HTTP gateway's MCP sessions and their SSE events (transports/http/roaming.py, events.py)."""
    lay, api = scope.layout, scope.api
    lists.allow_pub(lay.sse_subjects, f"store the SSE events of MCP sessions in {scope.ns}")
    lists.allow_pub(f"{api}.STREAM.INFO.{lay.sse_stream}", "open the SSE-event stream")
    lists.allow_pub(f"{api}.DIRECT.GET.{lay.sse_stream}", "replay a session's SSE events after a Last-Event-ID")
    lists.allow_sub(lay.sse_subjects, "forward other processes' SSE events to the streams this process holds")
    sessions = lay.sessions_bucket
    _kv(
        lists,
        api,
        sessions,
        f"{scope.ns} MCP-session",
        [(">", "MCP session records (any process serves any session)")],
        watch=False,
    )
    lists.allow_pub(f"{api}.DIRECT.GET.KV_{sessions}", "count a credential's sessions (newest record of each key)")
    calls = [("call.*", "records of sessions' tool calls, to answer a resend with the first outcome")]
    _kv(lists, api, lay.calls_bucket, f"{scope.ns} tool-call", calls, watch=False)
    lists.allow_pub(lay.session_control_subjects, "announce a session's end or log level to the other processes")
    lists.allow_sub(lay.session_control_subjects, "hear other processes' session announcements")


def grant_api_keys(lists: Grants, api: str) -> None:
    """A gateway authenticates its callers by reading their key records."""
    _kv(lists, api, APIKEYS_BUCKET, "API key", (), watch=False)


# -- the fleet coordinator (`nats-mcp fleet run`) --------------------------------------------------


def _open(lists: Grants, api: str, stream: str, what: str) -> None:
    lists.allow_pub(f"{api}.STREAM.INFO.{stream}", f"open {what} at start-up (it must exist: created by admin)")


def _fleet_bucket(lists: Grants, scope: Scope, *, write: bool) -> None:
    lay, api = scope.layout, scope.api
    writes = [(">", "the coordinator's lease, instances, target state, decisions (it is the bucket's only writer)")]
    what = f"{scope.ns} fleet"
    _kv(lists, api, lay.fleet_bucket, what, writes if write else (), watch=True)  # keys() reads through a watch


def grant_fleet(lists: Grants, scope: Scope, channels: Sequence[str], domain: str | None) -> None:
    """A fleet coordinator of one namespace: its own bucket, the queue counts and the registry's presence it decides
    on, and what every nats-mcp process runs (the work-events mover, so the work grants of an agent). No channel
    sends, no inbox, no registry writes: it is nobody's agent."""
    lay, api = scope.layout, scope.api
    _fleet_bucket(lists, scope, write=True)
    for channel in channels:
        _open(lists, api, lay.channel_stream(channel), f"channel {channel}")
    _kv(lists, api, lay.registry_bucket, f"{scope.ns} registry", (), watch=True)  # which agents are online
    _kv(lists, api, DIRECTORY_BUCKET, "shared directory", (), watch=True)
    _kv(
        lists,
        api,
        lay.identity_bucket,
        f"{scope.ns} identity",
        [("lock.*", "the namespace's maintenance locks")],
        watch=False,
    )
    _open(lists, api, f"KV_{lay.reservations_bucket}", f"the {scope.ns} reservation bucket")
    _work(lists, scope, domain)
    lists.caveat(
        f"the fleet user is the only writer of {lay.fleet_bucket}: agents and gateways get no write grant on it "
        "(gateways read it for the dashboard)"
    )
    lists.caveat(
        "registry GC runs in every nats-mcp process; this user may not remove other agents' entries, so its GC "
        "rounds are refused when there is something to collect (run GC from a gateway or admin process)"
    )
