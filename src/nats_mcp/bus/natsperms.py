"""Least-privilege NATS authorization: the boundary between the project's NATS names and nats-server permissions.

Pure functions: a role (``agent``, ``gateway``, ``admin``), the namespace(s), optionally the agent's GUID
-> the subjects that user may publish and subscribe to, each with the reason it is there, rendered as a
``permissions: {...}`` stanza to paste into a user of the nats-server ``authorization`` block (or as
JSON, e.g. for ``nsc edit user --allow-pub``). Every name comes from :class:`~nats_mcp.bus.layout.Layout`.

What the roles are:

* ``admin`` creates and updates every stream, bucket and consumer (provisioning), and may do anything
  under the project prefix. NATS subjects match whole tokens only, so "every stream whose name starts
  with ``nmcp_``" cannot be written: admin gets the account's whole JetStream API. Give nats-mcp an
  account of its own.
* ``agent`` is one stdio agent process of one namespace at run time. It creates nothing: streams and
  buckets must exist (made by admin with the same settings), because stream create/update would let it
  capture any subject of the account (another agent's replies included) into a stream it can read. It
  may create the work queues' durable consumers (new capabilities appear at run time) and the ordered
  consumers of its KV watches. With a GUID, it subscribes only to its own inbox subject and its own
  reply prefix, writes only its own registry entry, lease, handle and directory copy, and (by default)
  reads only its own inbox, through its own consumer (the process runs with ``nats.isolate_inbox``).
* Every user appends audit records only under its own writer token (its reply prefix): the subject
  a chain is stored on says which user wrote it.
* ``gateway`` serves any agent of its namespaces: the agent's grants for every GUID, plus the audit stream.

What subject permissions cannot do (also printed as caveats with each block):

* The JetStream API subjects of reading and deleting stored messages (``DIRECT.GET.<stream>``,
  ``STREAM.MSG.GET.<stream>``, ``STREAM.MSG.DELETE.<stream>``, ``STREAM.PURGE.<stream>``) name the
  stream, not the subject: the subject and sequence are in the payload. An agent allowed to read its
  inbox that way can read and delete every inbox of its namespace. ``isolate_inbox`` denies those and
  grants instead one durable consumer per agent through the subject-filtered create API
  (``CONSUMER.CREATE.<stream>.inbox_<guid>.<own subject>``), which the server checks against the
  request; the inbox reader of :mod:`nats_mcp.coord.inbox` reads that way when ``nats.isolate_inbox`` is set.
* A consumer's ``deliver_subject`` is not checked against its creator's permissions (nats-server
  issue 8274, still so in 2.15): whoever may create a consumer can have stream messages delivered to
  any subject of the account, e.g. into another namespace's streams. Write isolation between
  namespaces therefore needs one NATS account per namespace; read isolation holds.
* NATS does not stamp the publisher on a message: payload fields such as a DM's sender are not checked
  by NATS. The audit stream is the exception by layout: each user may publish only under its own writer token
  (``nmcp.audit.<writer>.<chain>``, the writer being its reply prefix), so the subject says which user wrote a chain.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from nats_mcp.bus.layout import (
    APIKEYS_BUCKET,
    AUDIT_STREAM,
    AUDIT_SUBJECTS,
    DIRECTORY_BUCKET,
    PREFIX,
    Layout,
    audit_writer,
    audit_writer_subjects,
)
from nats_mcp.bus.permsdoc import ROLES, NatsPermissions, Role, Rule, render_block
from nats_mcp.config.coordination import DEFAULT_CHANNELS
from nats_mcp.core.names import validate_guid, validate_name

DEFAULT_INBOX_PREFIX = "_INBOX"
"""nats-py's reply prefix: a user allowed ``_INBOX.>`` reads the replies of every client that keeps it."""

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_DOMAIN_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_PREFIX = 128


@dataclass
class _Lists:
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


def _rules(entries: dict[str, str]) -> tuple[Rule, ...]:
    return tuple(Rule(subject, reason) for subject, reason in entries.items())


# -- names ------------------------------------------------------------------------------------------


def api_prefix(jetstream_domain: str | None = None) -> str:
    """``$JS.API``, or ``$JS.<domain>.API`` when the JetStream domain is set (as :mod:`nats_mcp.bus.directget`)."""
    if jetstream_domain is None:
        return "$JS.API"
    if not _DOMAIN_RE.match(jetstream_domain):
        raise ValueError("jetstream domain must be 1-64 letters, digits, '_' or '-'")
    return f"$JS.{jetstream_domain}.API"


def inbox_consumer(guid: str) -> str:
    """The durable consumer an isolated agent reads its own inbox through."""
    return f"inbox_{validate_guid(guid)}"


def default_inbox_prefix(role: Role, namespaces: Sequence[str], agent: str | None = None) -> str:
    """The reply-subject prefix a user of ``role`` connects with when none is given (one per agent or gateway)."""
    if role == "admin":
        return "_INBOX_admin"
    if role == "agent":
        if agent is not None:
            return f"_INBOX_{validate_guid(agent)}"
        return f"_INBOX_ns_{validate_name(namespaces[0], 'namespace')}"
    digest = hashlib.sha256("\0".join(sorted(namespaces)).encode()).hexdigest()[:12]
    return f"_INBOX_gw_{digest}"


def check_inbox_prefix(prefix: str, role: Role) -> str:
    """A literal subject of tokens that no other user's permissions cover; ValueError otherwise."""
    if not isinstance(prefix, str) or not prefix or len(prefix) > MAX_PREFIX or not _PREFIX_RE.match(prefix):
        raise ValueError(
            f"inbox prefix {prefix!r} must be 1-{MAX_PREFIX} characters of dot-separated tokens "
            "(letters, digits, '_', '-'; no wildcards)"
        )
    if prefix.split(".")[0] == PREFIX:
        raise ValueError(f"inbox prefix {prefix!r} must not start with the project prefix {PREFIX!r}")
    if role != "admin" and prefix == DEFAULT_INBOX_PREFIX:
        raise ValueError(
            f"inbox prefix {DEFAULT_INBOX_PREFIX!r} would let this user subscribe to the replies of every client "
            f"using nats-py's default prefix: use one of its own, e.g. {DEFAULT_INBOX_PREFIX}_<agent guid>"
        )
    return prefix


# -- the grants -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
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


def _kv(lists: _Lists, api: str, bucket: str, what: str, writes: Sequence[tuple[str, str]], *, watch: bool) -> None:
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


def _acks(lists: _Lists, stream: str, consumer: str, reason: str, domain: str | None) -> None:
    lists.allow_pub(f"$JS.ACK.{stream}.{consumer}.>", reason)
    if domain is not None:  # the v2 form: $JS.ACK.<domain>.<account hash>.<stream>.<consumer>...
        lists.allow_pub(f"$JS.ACK.{domain}.*.{stream}.{consumer}.>", reason)


def _channels(lists: _Lists, scope: _Scope, channels: Sequence[str]) -> None:
    lay, api = scope.layout, scope.api
    for channel in channels:
        stream, subject = lay.channel_stream(channel), lay.channel_subject(channel)
        lists.allow_pub(subject, f"send to channel {channel} of {scope.ns}")
        lists.allow_pub(f"{api}.STREAM.INFO.{stream}", f"counters of channel {channel} (reads page from them)")
        lists.allow_pub(f"{api}.DIRECT.GET.{stream}", f"read the history of channel {channel}")
        lists.allow_sub(subject, f"new-message signals of channel {channel}")


def _inbox(lists: _Lists, scope: _Scope, domain: str | None) -> None:
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


def _dm_targets(lists: _Lists, api: str, namespaces: Sequence[str]) -> None:
    for namespace in namespaces:
        lay = Layout(namespace)
        lists.allow_pub(lay.inbox_subjects, f"send DMs to agents of {namespace}")
        lists.allow_pub(f"{api}.STREAM.INFO.{lay.inbox_stream}", f"find the inbox stream of {namespace} before sending")


def _registry(lists: _Lists, scope: _Scope) -> None:
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


def _work(lists: _Lists, scope: _Scope, domain: str | None) -> None:
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
    table = [(Layout.RESERVATIONS_KEY, "the reservation table (compare-and-set)")]
    _kv(lists, api, lay.reservations_bucket, f"{ns} reservation", table, watch=True)
    lists.allow_sub(lay.reservations_subject, "change signals of the reservation table (the resource's subscribers)")


def _audit(lists: _Lists, api: str, inbox_prefix: str) -> None:
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


def _namespace(lists: _Lists, scope: _Scope, channels: Sequence[str], domain: str | None) -> None:
    _channels(lists, scope, channels)
    _inbox(lists, scope, domain)
    _registry(lists, scope)
    _work(lists, scope, domain)
    if scope.role == "gateway":
        _sse_events(lists, scope)


def _sse_events(lists: _Lists, scope: _Scope) -> None:
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


_COMMON_CAVEATS = (
    "resources are not created by this user: run a process with the admin role (and the same settings) first; with "
    "different limits in its settings this user's setup is refused",
    "a consumer's deliver_subject is not checked against its creator's permissions (nats-server issue 8274): this user "
    "can have messages of streams it may consume delivered to any subject of the account, so namespaces are isolated "
    "for reads, not for writes, unless each namespace has its own NATS account",
    "NATS does not stamp the publisher on a message: sender fields in payloads (a DM's or channel message's "
    "senderGuid) are set by nats-mcp servers, but this user can publish a message with any senderGuid directly",
    "agents of one namespace share its work queues, DLQ and work state: any of them may claim, settle or delete any "
    "item there, and purge the work-events stream",
    "agents of one namespace share its reservation table (one key): a NATS user of an agent can rewrite anyone's "
    "reservations there directly; the server's ownership rules hold only for calls through nats-mcp",
    "the shared directory is readable by every user of the deployment (registry entries with scope public/personal)",
)


def build_permissions(
    role: Role,
    namespaces: Sequence[str] = (),
    *,
    agent: str | None = None,
    channels: Sequence[str] | None = None,
    dm_namespaces: Sequence[str] = (),
    inbox_prefix: str | None = None,
    jetstream_domain: str | None = None,
    isolate_inbox: bool | None = None,
    audit: bool = True,
) -> NatsPermissions:
    """The permissions of one NATS user of ``role``; ValueError on arguments that do not fit the role.

    ``namespaces``: the agent's one namespace, or the namespaces a gateway serves (admin: none, it has
    all). ``agent``: the agent's GUID (set ``identity.agent_id`` to it, so the process acts as exactly
    that GUID); without it an agent user is good for any agent of its namespace. ``channels``: the
    configured channel names (default: the built-in channels). ``dm_namespaces``: other namespaces
    whose agents may be sent DMs. ``inbox_prefix``: the reply prefix the client connects with (nats-py
    ``inbox_prefix``; default from :func:`default_inbox_prefix`). ``isolate_inbox``: the agent reads only its
    own inbox, through its own consumer (default: so when an agent GUID is given; the agent must then run with
    ``nats.isolate_inbox``). ``audit``: agents append audit records too (stdio runs the same guard); gateways
    always do.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    spaces = tuple(dict.fromkeys(validate_name(ns, "namespace") for ns in namespaces))
    dms = tuple(ns for ns in dict.fromkeys(validate_name(n, "namespace") for n in dm_namespaces) if ns not in spaces)
    guid = validate_guid(agent, "agent GUID") if agent is not None else None
    chans = tuple(dict.fromkeys(channels if channels is not None else [c.name for c in DEFAULT_CHANNELS]))
    for channel in chans:
        validate_name(channel, "channel")
    api = api_prefix(jetstream_domain)
    if isolate_inbox is None:
        isolate_inbox = role == "agent" and guid is not None
    if role == "admin" and (spaces or dms or guid or isolate_inbox):
        raise ValueError("the admin role covers every namespace: give no namespace, agent or isolate_inbox")
    if role == "agent" and len(spaces) != 1:
        raise ValueError("the agent role needs exactly one namespace")
    if role == "gateway" and (not spaces or guid is not None or isolate_inbox):
        raise ValueError("the gateway role needs at least one namespace and serves every agent (no agent GUID)")
    if isolate_inbox and guid is None:
        raise ValueError("isolate_inbox needs the agent's GUID")
    prefix = check_inbox_prefix(inbox_prefix or default_inbox_prefix(role, spaces, guid), role)

    lists = _Lists()
    if role == "admin":
        _admin(lists, api, prefix, jetstream_domain)
    else:
        lists.allow_sub(f"{prefix}.>", "replies to this user's requests (connect with this inbox prefix)")
        for namespace in spaces:
            scope = _Scope(Layout(namespace), api, role, guid, isolate_inbox)
            _namespace(lists, scope, chans, jetstream_domain)
        _dm_targets(lists, api, dms)
        if audit or role == "gateway":
            _audit(lists, api, prefix)
        if role == "gateway":
            _kv(lists, api, APIKEYS_BUCKET, "API key", (), watch=False)  # authenticating callers reads key records
        if role == "agent" and guid is None:
            lists.caveat(
                "no agent GUID: this user may act as any agent of its namespace (its inbox signals, registry entry, "
                "lease, handle); give --agent and set identity.agent_id to the same GUID"
            )
        for text in _COMMON_CAVEATS:
            lists.caveat(text)
    return NatsPermissions(
        role=role,
        namespaces=spaces,
        agent=guid,
        inbox_prefix=prefix,
        isolate_inbox=isolate_inbox,
        publish_allow=_rules(lists.pub),
        publish_deny=_rules(lists.pub_deny),
        subscribe_allow=_rules(lists.sub),
        subscribe_deny=_rules(lists.sub_deny),
        caveats=tuple(lists.caveats),
    )


def _admin(lists: _Lists, api: str, prefix: str, domain: str | None) -> None:
    lists.allow_pub(f"{api}.>", "the JetStream API: create, update and inspect streams, consumers and buckets")
    lists.allow_pub("$JS.ACK.>", "settle any delivery (DLQ repairs)")
    lists.allow_pub("$JS.FC.>", "flow-control replies of watches")
    lists.allow_pub("$KV.>", "write any key of any bucket")
    lists.allow_pub(f"{PREFIX}.>", "every project subject")
    lists.allow_sub(f"{PREFIX}.>", "every project subject")
    lists.allow_sub(f"{prefix}.>", "replies to this user's requests (connect with this inbox prefix)")
    lists.caveat(
        "subjects match whole tokens: the JetStream API, $KV and $JS.ACK cannot be limited to the nmcp_* streams, so "
        "this user can manage every stream of its account; give nats-mcp an account of its own"
    )
    if domain is not None:
        lists.caveat(f"JetStream domain {domain}: only its API prefix is granted")


__all__ = [
    "AUDIT_STREAM",
    "AUDIT_SUBJECTS",
    "ROLES",
    "NatsPermissions",
    "Role",
    "Rule",
    "api_prefix",
    "build_permissions",
    "check_inbox_prefix",
    "default_inbox_prefix",
    "inbox_consumer",
    "render_block",
]
