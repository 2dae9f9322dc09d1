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
* ``fleet`` is one fleet coordinator (``nats-mcp fleet run``) of one namespace: the only writer of the fleet
  bucket; reads the queues' counts and the registry's presence; runs the work-events mover as every process does.

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

from nats_mcp.bus.layout import AUDIT_STREAM, AUDIT_SUBJECTS, PREFIX, Layout
from nats_mcp.bus.natsgrants import (
    Grants,
    Scope,
    grant_api_keys,
    grant_audit,
    grant_dm_targets,
    grant_fleet,
    grant_namespace,
    inbox_consumer,
    rules,
)
from nats_mcp.bus.permsdoc import ROLES, NatsPermissions, Role, Rule, render_block
from nats_mcp.config.coordination import DEFAULT_CHANNELS
from nats_mcp.core.names import validate_guid, validate_name

DEFAULT_INBOX_PREFIX = "_INBOX"
"""nats-py's reply prefix: a user allowed ``_INBOX.>`` reads the replies of every client that keeps it."""

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_DOMAIN_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_PREFIX = 128


# -- names ------------------------------------------------------------------------------------------


def api_prefix(jetstream_domain: str | None = None) -> str:
    """``$JS.API``, or ``$JS.<domain>.API`` when the JetStream domain is set (as :mod:`nats_mcp.bus.directget`)."""
    if jetstream_domain is None:
        return "$JS.API"
    if not _DOMAIN_RE.match(jetstream_domain):
        raise ValueError("jetstream domain must be 1-64 letters, digits, '_' or '-'")
    return f"$JS.{jetstream_domain}.API"


def default_inbox_prefix(role: Role, namespaces: Sequence[str], agent: str | None = None) -> str:
    """The reply-subject prefix a user of ``role`` connects with when none is given (one per agent or gateway)."""
    if role == "admin":
        return "_INBOX_admin"
    if role == "agent":
        if agent is not None:
            return f"_INBOX_{validate_guid(agent)}"
        return f"_INBOX_ns_{validate_name(namespaces[0], 'namespace')}"
    if role == "fleet":
        return f"_INBOX_fleet_{validate_name(namespaces[0], 'namespace')}"
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
    if role == "fleet" and (len(spaces) != 1 or guid is not None or isolate_inbox or dms):
        raise ValueError("the fleet role needs exactly one namespace, and no agent GUID, isolate_inbox or DM namespace")
    if role == "gateway" and (not spaces or guid is not None or isolate_inbox):
        raise ValueError("the gateway role needs at least one namespace and serves every agent (no agent GUID)")
    if isolate_inbox and guid is None:
        raise ValueError("isolate_inbox needs the agent's GUID")
    prefix = check_inbox_prefix(inbox_prefix or default_inbox_prefix(role, spaces, guid), role)

    lists = Grants()
    if role == "admin":
        _admin(lists, api, prefix, jetstream_domain)
    else:
        lists.allow_sub(f"{prefix}.>", "replies to this user's requests (connect with this inbox prefix)")
        for namespace in spaces:
            scope = Scope(Layout(namespace), api, role, guid, isolate_inbox)
            (grant_fleet if role == "fleet" else grant_namespace)(lists, scope, chans, jetstream_domain)
        grant_dm_targets(lists, api, dms)
        if audit or role == "gateway":
            grant_audit(lists, api, prefix)
        if role == "gateway":
            grant_api_keys(lists, api)
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
        publish_allow=rules(lists.pub),
        publish_deny=rules(lists.pub_deny),
        subscribe_allow=rules(lists.sub),
        subscribe_deny=rules(lists.sub_deny),
        caveats=tuple(lists.caveats),
    )


def _admin(lists: Grants, api: str, prefix: str, domain: str | None) -> None:
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
