"""The NATS naming boundary: every stream, bucket and subject name of the project comes from here.

Names are built only from tokens validated by :mod:`nats_mcp.core.names`, so a user-supplied value can
never add a subject token, a wildcard or a stream-name collision. Everything is namespaced: a
namespace isolates its channels, registry, inboxes, work queues and dead-letter queue. The one shared
bucket, the directory, holds copies of the registry entries that other namespaces may see.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from nats_mcp.core.names import (
    RESERVED_NAMESPACES,
    InvalidNameError,
    validate_guid,
    validate_name,
    validate_type_name,
    validate_uuid,
)

PREFIX = "nmcp"
"""Subject prefix of every project subject (keeps us clear of other applications on a shared NATS)."""

DIRECTORY_BUCKET = f"{PREFIX}_directory"
"""Shared KV bucket: registry entries with scope public or personal, keyed ``<namespace>.<guid>``."""


@dataclass(frozen=True)
class Layout:
    """All NATS names of one namespace."""

    namespace: str

    def __post_init__(self) -> None:
        validate_name(self.namespace, "namespace")
        if self.namespace in RESERVED_NAMESPACES:
            raise InvalidNameError(f"namespace {self.namespace!r} is reserved; choose another name")

    # -- channels --------------------------------------------------------------------------------
    def channel_stream(self, channel: str) -> str:
        return f"{PREFIX}_{self.namespace}_chan_{validate_name(channel, 'channel')}"

    def channel_subject(self, channel: str) -> str:
        return f"{PREFIX}.{self.namespace}.chan.{validate_name(channel, 'channel')}"

    # -- registry, identity ----------------------------------------------------------------------
    @property
    def registry_bucket(self) -> str:
        """KV: ``<guid>`` -> registry entry (JSON)."""
        return f"{PREFIX}_{self.namespace}_registry"

    @property
    def identity_bucket(self) -> str:
        """KV: ``lease.<guid>`` live-instance leases, ``handle.<guid>`` handles, ``lock.<name>`` locks."""
        return f"{PREFIX}_{self.namespace}_identity"

    @property
    def fleet_bucket(self) -> str:
        """KV: ``lock.fleet`` the active coordinator's lease, ``inst.<target>.<id>`` instances, ``target.<name>``,
        ``decisions`` (fleet/state.py)."""
        return f"{PREFIX}_{self.namespace}_fleet"

    @staticmethod
    def lease_key(guid: str) -> str:
        return f"lease.{validate_guid(guid)}"

    @staticmethod
    def handle_key(guid: str) -> str:
        return f"handle.{validate_guid(guid)}"

    @staticmethod
    def lock_key(name: str) -> str:
        return f"lock.{validate_name(name, 'lock name')}"

    def directory_key(self, guid: str) -> str:
        return f"{self.namespace}.{validate_guid(guid)}"

    # -- inboxes ---------------------------------------------------------------------------------
    @property
    def inbox_stream(self) -> str:
        """One stream per namespace holds every inbox; a DM is stored under its recipient's subject."""
        return f"{PREFIX}_{self.namespace}_inbox"

    @property
    def inbox_subjects(self) -> str:
        return f"{PREFIX}.{self.namespace}.inbox.*"

    def inbox_subject(self, guid: str) -> str:
        return f"{PREFIX}.{self.namespace}.inbox.{validate_guid(guid)}"

    # -- work queues, dead-letter queue ------------------------------------------------------------
    @property
    def work_stream(self) -> str:
        """WorkQueue stream of every capability's items; one subject per (capability, priority[, boundary])."""
        return f"{PREFIX}_{self.namespace}_work"

    @property
    def work_subjects(self) -> str:
        """Every work subject: ``work.<cap>.<prio>`` (unbounded items, the only form before boundaries existed, so a
        stream and consumers made by an older version keep serving them) and ``work.<cap>.<prio>.<boundary>``."""
        return f"{PREFIX}.{self.namespace}.work.>"

    def work_subject(self, capability: str, priority: int | str = "*", boundary: str | None = None) -> str:
        """``priority`` "*" gives the wildcard over every priority and boundary of the capability."""
        cap = validate_type_name(capability, "capability")
        if priority == "*":
            return f"{PREFIX}.{self.namespace}.work.{cap}.>"
        if not (isinstance(priority, int) and 1 <= priority <= 10):
            raise ValueError("priority must be an integer from 1 to 10")
        tail = "" if boundary is None else "." + validate_name(boundary, "boundary")
        return f"{PREFIX}.{self.namespace}.work.{cap}.{priority}{tail}"

    def work_boundary_subjects(self, capability: str, boundary: str | None) -> str:
        """The filter over every priority of one boundary of a capability (None: its unbounded items)."""
        cap = validate_type_name(capability, "capability")
        tail = "" if boundary is None else "." + validate_name(boundary, "boundary")
        return f"{PREFIX}.{self.namespace}.work.{cap}.*{tail}"

    def parse_work_subject(self, subject: str) -> tuple[str, int, str | None] | None:
        """(capability, priority, boundary or None) of a work subject of this namespace, or None."""
        parts = subject.split(".")
        if len(parts) not in (5, 6) or parts[:3] != [PREFIX, self.namespace, "work"] or not parts[4].isdigit():
            return None
        priority = int(parts[4])
        return (parts[3], priority, parts[5] if len(parts) == 6 else None) if 1 <= priority <= 10 else None

    @staticmethod
    def work_consumer(capability: str, priority: int, boundary: str | None = None) -> str:
        """Durable pull consumer of one (capability, priority, boundary): filters never overlap, as a WorkQueue
        requires. Unbounded: ``w_<cap>_<prio>`` (the name older versions gave); bounded: ``wb_<boundary>_<cap>_<prio>``
        (a boundary has no '_', so the name reads back unambiguously)."""
        base = f"{validate_type_name(capability, 'capability')}_{priority}"
        return f"w_{base}" if boundary is None else f"wb_{validate_name(boundary, 'boundary')}_{base}"

    @staticmethod
    def parse_work_consumer(name: str) -> tuple[str, int, str | None] | None:
        """(capability, priority, boundary or None) of a work consumer's name, or None."""
        boundary: str | None = None
        if name.startswith("wb_"):
            boundary, _, name = name[3:].partition("_")
            name = "w_" + name
        head, _, tail = name.rpartition("_")
        if (
            not head.startswith("w_")
            or len(head) < 3
            or not tail.isdigit()
            or not 1 <= int(tail) <= 10
            or boundary == ""
        ):
            return None
        return head[2:], int(tail), boundary

    @property
    def work_state_bucket(self) -> str:
        """KV: ``item.<id>`` each claimed item's state (the linearization point), ``requeue.<id>`` DLQ retries."""
        return f"{PREFIX}_{self.namespace}_workstate"

    @staticmethod
    def item_key(item_id: str) -> str:
        return f"item.{validate_uuid(item_id, 'workItemId')}"

    @staticmethod
    def requeue_key(item_id: str) -> str:
        return f"requeue.{validate_uuid(item_id, 'itemId')}"

    @property
    def events_stream(self) -> str:
        """WorkQueue stream capturing max-delivery advisories of the work stream and deadline timers."""
        return f"{PREFIX}_{self.namespace}_workev"

    @property
    def max_deliveries_advisories(self) -> str:
        return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.work_stream}.*"

    @property
    def events_subjects(self) -> str:
        return f"{PREFIX}.{self.namespace}.workev.>"

    def deadline_timer_subject(self, item_id: str) -> str:
        """Holds an item's scheduled deadline message (``Nats-Schedule: @at``) until it fires."""
        return f"{PREFIX}.{self.namespace}.workev.at.{validate_uuid(item_id, 'workItemId')}"

    def deadline_due_subject(self, item_id: str) -> str:
        return f"{PREFIX}.{self.namespace}.workev.due.{validate_uuid(item_id, 'workItemId')}"

    @property
    def deadline_due_subjects(self) -> str:
        return f"{PREFIX}.{self.namespace}.workev.due.*"

    MOVER_CONSUMER = "mover"

    @property
    def dlq_stream(self) -> str:
        return f"{PREFIX}_{self.namespace}_dlq"

    @property
    def dlq_subjects(self) -> str:
        """Every DLQ subject: ``dlq.<cap>.<id>`` (the only form before boundaries existed) and, for an item of a work
        boundary, ``dlq.<cap>.<id>.<boundary>`` (so counts per capability can leave a boundary out)."""
        return f"{PREFIX}.{self.namespace}.dlq.>"

    def dlq_subject(self, capability: str = "*", item_id: str = "*", boundary: str | None = None) -> str:
        """One subject per dead-lettered item, so an entry is created at most once and found by id."""
        cap = capability if capability == "*" else validate_type_name(capability, "capability")
        item = item_id if item_id == "*" else validate_uuid(item_id, "itemId")
        tail = "" if boundary is None else "." + validate_name(boundary, "boundary")
        return f"{PREFIX}.{self.namespace}.dlq.{cap}.{item}{tail}"

    def dlq_filter(self, capability: str | None = None) -> str:
        """Every entry of one capability (None: of all), whatever its boundary."""
        cap = "*" if capability is None else validate_type_name(capability, "capability")
        return f"{PREFIX}.{self.namespace}.dlq.{cap}.>"

    # -- tool calls of MCP sessions, kept to answer a resend (coord/replay.py) ----------------------
    @property
    def calls_bucket(self) -> str:
        """KV: ``call.<token>`` the state and outcome of one deduplicated tool call, for the replay window."""
        return f"{PREFIX}_{self.namespace}_calls"

    @staticmethod
    def call_key(token: str) -> str:
        """``token`` is a sha256 hex digest (64 lowercase hex characters), never a caller's raw value."""
        if len(token) != 64 or not set(token) <= _HEX:
            raise InvalidNameError("a call token is a sha256 hex digest")
        return f"call.{token}"

    # -- reservations (coord/reservations/) ---------------------------------------------------------
    @property
    def reservations_bucket(self) -> str:
        """KV: ``table`` the namespace's reservation table (every live reservation and the fencing counter), one key
        written by compare-and-set so an acquire of up to 100 resources is all or nothing."""
        return f"{PREFIX}_{self.namespace}_resv"

    RESERVATIONS_KEY = "table"

    @property
    def reservations_subject(self) -> str:
        """Where every write of the reservation table is published (a core subscription hears each change)."""
        return f"$KV.{self.reservations_bucket}.{self.RESERVATIONS_KEY}"

    # -- SSE events of HTTP sessions (transports/http_events.py) ------------------------------------
    @property
    def sse_stream(self) -> str:
        """Limits stream (with an age limit) of the SSE events of MCP sessions, for ``Last-Event-ID`` resumption."""
        return f"{PREFIX}_{self.namespace}_sse"

    @property
    def sse_subjects(self) -> str:
        return f"{PREFIX}.{self.namespace}.sse.>"

    def sse_subject(self, session: str, stream: str) -> str:
        """One subject per (session, SSE stream); ``stream`` "" gives the session's prefix (ending in ".")."""
        return f"{PREFIX}.{self.namespace}.sse.{validate_guid(session, 'session id')}.{stream}"

    # -- MCP sessions of the HTTP gateway (bus/sessions.py) ------------------------------------------
    @property
    def sessions_bucket(self) -> str:
        """KV: ``<owner digest>.<session id>`` -> session record (JSON), with the sessions' idle TTL."""
        return f"{PREFIX}_{self.namespace}_sessions"

    @staticmethod
    def session_key(owner: str, session: str) -> str:
        return f"{validate_guid(owner, 'session owner')}.{validate_guid(session, 'session id')}"

    @property
    def session_control_subjects(self) -> str:
        """Where a change to a session (its end, its log level) is announced to every gateway process."""
        return f"{PREFIX}.{self.namespace}.sessctl.*"

    def session_control_subject(self, session: str) -> str:
        return f"{PREFIX}.{self.namespace}.sessctl.{validate_guid(session, 'session id')}"


def parse_directory_key(key: str) -> tuple[str, str]:
    """``<namespace>.<guid>`` -> (namespace, guid), validated."""
    namespace, _, guid = key.partition(".")
    return validate_name(namespace, "namespace"), validate_guid(guid)


# -- audit (per deployment, not per namespace) ----------------------------------------------------
APIKEYS_BUCKET = f"{PREFIX}_apikeys"
"""Deployment-wide KV bucket of API keys (salted hashes only), keyed by key id."""

AUDIT_STREAM = f"{PREFIX}_audit"
"""The deployment's audit stream: every server process's hash chain, one subject per writer and chain."""

AUDIT_SUBJECTS = f"{PREFIX}.audit.>"
"""The audit stream's subjects: ``nmcp.audit.<writer>.<chain>`` (and ``nmcp.audit.<chain>``, where records were
stored before writers were named: still read and verified, never written, their writer unknown)."""

DEFAULT_REPLY_PREFIX = "_INBOX"
"""nats-py's reply prefix, used when ``nats.inbox_prefix`` is not set."""

_HEX = frozenset("0123456789abcdef")
_WRITER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def audit_writer(inbox_prefix: str | None) -> str:
    """The writer token of a NATS user's audit chains: its reply prefix (one per user in the printed permissions,
    which let it publish only under its own token), or ``h_<digest>`` of a multi-token prefix."""
    prefix = inbox_prefix or DEFAULT_REPLY_PREFIX
    if "." in prefix or not prefix or not set(prefix) <= _WRITER_CHARS:
        return "h_" + hashlib.sha256(prefix.encode()).hexdigest()[:24]
    return prefix


def check_audit_writer(writer: str) -> str:
    """A writer token as :func:`audit_writer` makes them (one subject token); InvalidNameError otherwise."""
    if not writer or len(writer) > 128 or not set(writer) <= _WRITER_CHARS:
        raise InvalidNameError(f"audit writer {writer!r} is not one subject token of letters, digits, '_' or '-'")
    return writer


def audit_writer_subjects(writer: str) -> str:
    """Every chain subject of one writer (what its NATS user may publish to)."""
    return f"{PREFIX}.audit.{check_audit_writer(writer)}.*"


def audit_subject(chain: str, writer: str) -> str:
    """The subject of one audit chain of one writer (a chain id has the agent-GUID format: 32 lowercase hex)."""
    return f"{PREFIX}.audit.{check_audit_writer(writer)}.{validate_guid(chain, 'audit chain id')}"


def audit_chain_filter(chain: str) -> str:
    """A subject filter matching one chain whoever wrote it."""
    return f"{PREFIX}.audit.*.{validate_guid(chain, 'audit chain id')}"


def parse_audit_subject(subject: str) -> tuple[str | None, str] | None:
    """``nmcp.audit.<writer>.<chain>`` -> (writer, chain); the older ``nmcp.audit.<chain>`` -> (None, chain);
    None for anything else."""
    parts = subject.split(".")
    if len(parts) not in (3, 4) or parts[:2] != [PREFIX, "audit"]:
        return None
    try:
        chain = validate_guid(parts[-1], "audit chain id")
        writer = check_audit_writer(parts[2]) if len(parts) == 4 else None
    except InvalidNameError:
        return None
    return writer, chain
