"""The authorization policy boundary: roles and who holds them, loaded from YAML, deciding every call (default deny).

A policy file::

    version: 1
    default_roles: []                  # roles every authenticated principal has
    roles:
      agent:
        tools: ["*"]                   # globs over tool names without the prefix: channels_*, work_claim, ...
        deny_tools: []                 # a tool denied by any role of the principal is denied
        namespaces: ["team-a"]         # where the role may act
        channels: {read: ["*"], send: ["general", "dev-*"]}
        capabilities: {broadcast: ["*"], claim: ["python", "review"]}   # reading a queue needs either
                                       # + boundaries: [corporate]: work boundaries ('*': all; none: unbounded only)
        admin: []                      # admin operations: dlq (retry, discard), dashboard (the web page, top),
                                       # reservations (force-release anyone's)
        reservations: ["src/**"]       # project paths and globs the role may reserve (empty: none)
        agents: ["*"]                  # agent names a gateway principal may act as
        max_agents: 16                 # how many distinct agent names at once (default: the setting)
        nats:                          # the nats_* operations tools (docs/nats-ops-tools.md); empty: none
          server: false                # nats_server_info
          subjects: {read: [], write: ["orders.*"]}   # globs; '*' also crosses dots
          streams: {read: ["ORDERS*"], write: []}
          buckets: {read: ["config"], write: []}
    principals:                        # who holds which roles (globs; every given field must match)
      - {issuer: "https://idp.example.com", subject: "ci-*", roles: [agent]}
      - {method: mtls, subject: "spiffe://example.org/agent/*", roles: [agent]}
    groups: {platform-admins: [admin]} # group / role claims of a token
    scopes: {"mcp:agent": [agent]}     # OAuth scopes

What a call touches is not looked up here by tool name: each tool declares its needs beside its definition
(:mod:`nats_mcp.security.needs`: the channel it sends to or reads, the capability queue it uses or reads, an admin
operation, the NATS names it reads or writes) and :meth:`Policy.decide` checks the needs passed in with the call.

Prompts and completions (``api/assist.py``) need no grants of their own: a principal is listed, may get and may
complete a prompt only if it may call every tool the prompt names, and completion values are only names it may use
(channels it may read, capabilities whose queue it may read, agents it can discover).

Everything not granted is denied. Without a policy file the built-in one gives the role ``agent`` every
tool everywhere (and the admin operations, the dashboard included): right for a local stdio process, which
acts for the user who started it, and for the quick start's own key.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nats_mcp.config.documents import parse_document
from nats_mcp.core import pathglob
from nats_mcp.core.lru import LruTable
from nats_mcp.security.needs import (
    Admin,
    AdminOp,
    CapabilityRead,
    CapabilityUse,
    ChannelRead,
    ChannelSend,
    NatsAccess,
    NatsKind,
    NatsNeed,
    Need,
    Needs,
    Reserve,
)
from nats_mcp.security.principal import Principal


class PolicyError(ValueError):
    """A policy file that cannot be used; the message says where and why."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadSend(_Model):
    read: list[str] = Field(default_factory=list)
    send: list[str] = Field(default_factory=list)


class BroadcastClaim(_Model):
    broadcast: list[str] = Field(default_factory=list)
    claim: list[str] = Field(default_factory=list)
    boundaries: list[str] = Field(default_factory=list)
    """Globs of the boundaries whose items the grants reach; empty (the default): unbounded items only, as before."""

    @model_validator(mode="after")
    def _boundary_globs(self) -> BroadcastClaim:
        bad = [b for b in self.boundaries if not _BOUNDARY_GLOB.match(b)]
        if bad:
            raise ValueError(f"boundaries are names (a-z, 0-9, '-') or globs with '*': {', '.join(bad)}")
        return self

    def takes(self, capability: str, boundary: str, action: Literal["broadcast", "claim", "read"]) -> bool:
        """Whether this grant reaches ``capability``'s items in ``boundary`` for ``action`` (read: either)."""
        if not _any(self.boundaries, boundary):
            return False
        if action == "read":
            return _any(self.claim, capability) or _any(self.broadcast, capability)
        return _any(getattr(self, action), capability)


_BOUNDARY_GLOB = re.compile(r"^[a-z0-9*][a-z0-9*-]{0,62}$")


NatsRW = Literal["read", "write"]


class ReadWrite(_Model):
    """Globs of the names a role may read and write ('*' matches any run of characters, dots included)."""

    read: list[str] = Field(default_factory=list)
    write: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _plain_globs(self) -> ReadWrite:
        # '?' and '[..]' could match a NATS wildcard character ('*', '>') in a subject and grant more than meant.
        bad = [p for p in (*self.read, *self.write) if "?" in p or "[" in p]
        if bad:
            raise ValueError(f"nats globs may only use '*' as a wildcard: {', '.join(bad)}")
        return self


class NatsGrant(_Model):
    """What a role may do with the ``nats_*`` operations tools; nothing unless listed."""

    server: bool = False
    subjects: ReadWrite = Field(default_factory=ReadWrite)
    streams: ReadWrite = Field(default_factory=ReadWrite)
    buckets: ReadWrite = Field(default_factory=ReadWrite)

    def grants(self, need: NatsNeed) -> bool:
        if need == "server":
            return self.server
        return any(getattr(rw, need) for rw in (self.subjects, self.streams, self.buckets))


@dataclass(frozen=True)
class NatsScope:
    """The names one principal's ``nats_*`` calls may touch: the union of its roles' ``nats`` blocks."""

    grants: tuple[NatsGrant, ...] = ()

    def allows(self, kind: NatsKind, access: NatsRW, name: str) -> bool:
        return any(_any(getattr(getattr(g, kind), access), name) for g in self.grants)


class Role(_Model):
    tools: list[str] = Field(default_factory=list)
    deny_tools: list[str] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)
    channels: ReadSend = Field(default_factory=ReadSend)
    capabilities: BroadcastClaim = Field(default_factory=BroadcastClaim)
    admin: list[AdminOp] = Field(default_factory=list)
    agents: list[str] = Field(default_factory=lambda: ["*"])
    max_agents: int | None = Field(default=None, ge=1, le=100_000)
    nats: NatsGrant = Field(default_factory=NatsGrant)
    reservations: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _project_globs(self) -> Role:
        for grant in self.reservations:
            try:
                pathglob.normalise(grant)
            except pathglob.BadPath as exc:
                raise ValueError(f"reservations: {exc}") from None
        return self


class PrincipalRule(_Model):
    subject: str | None = None
    issuer: str | None = None
    method: str | None = None
    roles: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _something(self) -> PrincipalRule:
        if self.subject is None and self.issuer is None and self.method is None:
            raise ValueError("a principals entry needs at least one of subject, issuer, method")
        return self

    def matches(self, p: Principal) -> bool:
        return all(
            pattern is None or fnmatch.fnmatchcase(value, pattern)
            for pattern, value in ((self.subject, p.subject), (self.issuer, p.issuer), (self.method, p.method))
        )


class PolicyDoc(_Model):
    version: Literal[1] = 1
    default_roles: list[str] = Field(default_factory=list)
    roles: dict[str, Role] = Field(default_factory=dict)
    principals: list[PrincipalRule] = Field(default_factory=list)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    scopes: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_roles(self) -> PolicyDoc:
        named = [("default_roles", r) for r in self.default_roles]
        named += [(f"principals[{i}]", r) for i, rule in enumerate(self.principals) for r in rule.roles]
        named += [(f"groups.{g}", r) for g, roles in self.groups.items() for r in roles]
        named += [(f"scopes.{s}", r) for s, roles in self.scopes.items() for r in roles]
        unknown = [f"{where}: {role!r}" for where, role in named if role not in self.roles]
        if unknown:
            raise ValueError(f"unknown role(s) {', '.join(unknown)}; define them under roles")
        return self


BUILTIN = PolicyDoc(
    roles={
        "agent": Role(
            tools=["*"],
            namespaces=["*"],
            channels=ReadSend(read=["*"], send=["*"]),
            capabilities=BroadcastClaim(broadcast=["*"], claim=["*"], boundaries=["*"]),
            admin=["dlq", "dashboard", "reservations"],  # the quick start's key may open the dashboard; a policy
            reservations=["**"],  # file decides
        )
    }
)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


ALLOW = Decision(True)


@functools.lru_cache(maxsize=4096)
def _glob(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One compiled regex for a list of globs (compiled once per distinct list)."""
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or "(?!)")


def _any(patterns: list[str], value: str) -> bool:
    return _glob(tuple(patterns)).match(value) is not None


class Policy:
    """A loaded policy, answering: which roles does a principal hold, and may it make this call?"""

    def __init__(self, doc: PolicyDoc, source: str = "built-in", cache_size: int = 10_000) -> None:
        self.doc = doc
        self.source = source
        self._roles: LruTable[Principal, list[Role]] = LruTable(cache_size)
        self._tool_decisions: dict[tuple[Principal, str, str, Needs], Decision] = {}
        self._cache_size = cache_size

    @classmethod
    def load(cls, path: Path | None) -> Policy:
        if path is None:
            return cls(BUILTIN)
        return cls(parse_policy(path.read_text(encoding="utf-8"), str(path)), str(path))

    def roles_of(self, p: Principal) -> list[Role]:
        """The roles ``p`` holds (remembered per principal: a policy never changes once loaded)."""
        cached = self._roles.get(p)
        if cached is None:
            cached = self._resolve(p)
            self._roles.put(p, cached)
        return cached

    def _resolve(self, p: Principal) -> list[Role]:
        names = set(p.roles) | set(self.doc.default_roles)
        names.update(r for rule in self.doc.principals if rule.matches(p) for r in rule.roles)
        names.update(r for g in p.groups for r in self.doc.groups.get(g, ()))
        names.update(r for s in p.scopes for r in self.doc.scopes.get(s, ()))
        return [self.doc.roles[n] for n in sorted(names) if n in self.doc.roles]

    def tool_allowed(self, p: Principal, tool: str, needs: Needs, roles: list[Role] | None = None) -> bool:
        """Whether the principal may call ``tool``, which declares ``needs``, at all (what ``tools/list`` shows it)."""
        roles = self.roles_of(p) if roles is None else roles
        if any(_any(r.deny_tools, tool) for r in roles):
            return False
        if not any(_any(r.tools, tool) for r in roles):
            return False
        for need in needs:
            if isinstance(need, Admin) and not any(need.op in r.admin for r in roles):
                return False
            # A nats_* tool also needs a role that grants it by name *and* grants that kind of NATS access:
            # "tools: ['*']" alone (the built-in role) opens none of them.
            nats = need.access if isinstance(need, NatsAccess) else None
            if nats is not None and not any(_any(r.tools, tool) and r.nats.grants(nats) for r in roles):
                return False
        return True

    def nats_scope(self, p: Principal) -> NatsScope:
        """The names ``p``'s nats_* calls may touch (lists show only these)."""
        return NatsScope(tuple(r.nats for r in self.roles_of(p)))

    def admin_allowed(self, p: Principal, op: AdminOp) -> bool:
        """Whether one of the principal's roles lists the admin operation ``op``."""
        return any(op in r.admin for r in self.roles_of(p))

    def namespace_allowed(self, p: Principal, namespace: str, roles: list[Role] | None = None) -> bool:
        if p.namespaces is not None and namespace not in p.namespaces:
            return False
        roles = self.roles_of(p) if roles is None else roles
        return any(_any(r.namespaces, namespace) for r in roles)

    def agent_allowed(self, p: Principal, agent: str | None) -> bool:
        """Whether a gateway principal may act as the agent named ``agent`` (None: its default agent)."""
        return any(_any(r.agents, agent or "default") for r in self.roles_of(p))

    def max_agents(self, p: Principal, default: int) -> int:
        """How many distinct agent names ``p`` may act as: the largest ``max_agents`` of its roles, else ``default``."""
        given = [r.max_agents for r in self.roles_of(p) if r.max_agents is not None]
        return max(given) if given else default

    def capability_readable(self, p: Principal, capability: str, roles: list[Role] | None = None) -> bool:
        """Whether ``p`` may read ``capability``'s queue: a role grants it claim or broadcast."""
        roles = self.roles_of(p) if roles is None else roles
        return any(_any(r.capabilities.claim, capability) or _any(r.capabilities.broadcast, capability) for r in roles)

    def capability_reader(self, p: Principal) -> Callable[[str], bool] | None:
        """Which capabilities' queues ``p`` may read (None: every one, as a '*' grant says)."""
        roles = self.roles_of(p)
        if any("*" in r.capabilities.claim or "*" in r.capabilities.broadcast for r in roles):
            return None
        return functools.partial(self.capability_readable, p, roles=roles)

    def boundary_reader(self, p: Principal) -> Callable[[str, str, bool], bool] | None:
        """Which work boundaries' items ``p`` may see (take False) or claim (take True), per capability: those a role
        grants beside the capability (None: every one, as '*' in each role that grants any capability says)."""
        roles = [r for r in self.roles_of(p) if r.capabilities.claim or r.capabilities.broadcast]
        if all("*" in r.capabilities.boundaries for r in roles):
            return None
        return lambda cap, bnd, take: any(r.capabilities.takes(cap, bnd, "claim" if take else "read") for r in roles)

    def reservation_reader(self, p: Principal) -> Callable[[str], bool] | None:
        """Which reservations ``p`` may see: those of resources overlapping a glob it may reserve (None: all, as a
        ``**`` grant says)."""
        grants = [pathglob.normalise(g) for r in self.roles_of(p) for g in r.reservations]
        if "**" in grants:
            return None
        return lambda resource: any(pathglob.overlap(g, resource) for g in grants)

    def channel_reader(self, p: Principal) -> Callable[[str], bool] | None:
        """Which channels ``p`` may read (None: every one, as a '*' grant says)."""
        roles = self.roles_of(p)
        if any("*" in r.channels.read for r in roles):
            return None
        return lambda channel: any(_any(r.channels.read, channel) for r in roles)

    def _tool_decision(self, p: Principal, tool: str, namespace: str, needs: Needs, roles: list[Role]) -> Decision:
        """The part of a decision that does not depend on arguments, remembered (bounded) per call site."""
        key = (p, tool, namespace, needs)
        known = self._tool_decisions.get(key)
        if known is not None:
            return known
        if not roles:
            decision = Decision(False, "no role grants this principal anything")
        elif not self.tool_allowed(p, tool, needs, roles):
            decision = Decision(False, f"the policy does not allow {tool}")
        elif not self.namespace_allowed(p, namespace, roles):
            decision = Decision(False, f"the policy does not allow namespace {namespace}")
        else:
            decision = ALLOW
        if len(self._tool_decisions) >= self._cache_size:
            self._tool_decisions.clear()
        self._tool_decisions[key] = decision
        return decision

    def decide(self, p: Principal, tool: str, namespace: str, arguments: Mapping[str, Any], needs: Needs) -> Decision:
        """May ``p`` call ``tool``, which declares ``needs``, in ``namespace`` with these arguments? Default deny."""
        roles = self.roles_of(p)
        decision = self._tool_decision(p, tool, namespace, needs, roles)
        if not decision.allowed:
            return decision
        for need in needs:
            decision = self._need_decision(p, need, arguments, roles)
            if not decision.allowed:
                return decision
        return ALLOW

    def _need_decision(
        self,
        p: Principal,
        need: Need,
        arguments: Mapping[str, Any],
        roles: list[Role],
    ) -> Decision:
        """Whether the resources one declared need names in ``arguments`` are granted."""
        if isinstance(need, ChannelSend):
            channel = arguments.get(need.arg)
            if not any(_any(r.channels.send, str(channel)) for r in roles):
                return Decision(False, f"the policy does not allow sending to channel {channel}")
        elif isinstance(need, ChannelRead):
            channel = arguments.get(need.arg)
            if channel is not None and not any(_any(r.channels.read, str(channel)) for r in roles):
                return Decision(False, f"the policy does not allow reading channel {channel}")
        elif isinstance(need, CapabilityUse):
            capability = str(arguments.get(need.arg))
            if not any(_any(getattr(r.capabilities, need.action), capability) for r in roles):
                return Decision(False, f"the policy does not allow {need.action} for capability {capability}")
            bnd = arguments.get(need.boundary) if need.boundary is not None else None
            if bnd is not None and not any(r.capabilities.takes(capability, str(bnd), need.action) for r in roles):
                return Decision(False, f"the policy does not allow {need.action} for {capability} in boundary {bnd}")
        elif isinstance(need, CapabilityRead):
            queue = arguments.get(need.arg)
            if queue is not None and not self.capability_readable(p, str(queue), roles):
                return Decision(
                    False,
                    f"the policy does not allow reading the queue of capability {queue} "
                    "(it needs a claim or broadcast grant)",
                )
        elif isinstance(need, NatsAccess):
            return _nats_decision(roles, need, arguments)
        elif isinstance(need, Reserve):
            return _reserve_decision(roles, arguments.get(need.arg))
        return ALLOW


def _reserve_decision(roles: list[Role], value: Any) -> Decision:
    """Every resource a reservation names must lie inside a ``reservations`` glob of one of the roles. A value that
    is no project path is left to the tool, which refuses it (``invalid_argument``) with nothing written."""
    for raw in value if isinstance(value, list) else []:
        try:
            wanted = pathglob.normalise(raw)
        except pathglob.BadPath:
            continue
        grants = (pathglob.normalise(g) for r in roles for g in r.reservations)
        if not any(pathglob.covers(g, wanted) for g in grants):
            return Decision(False, f"the policy does not allow reserving {wanted[:200]}")
    return ALLOW


def _nats_decision(roles: list[Role], need: NatsAccess, arguments: Mapping[str, Any]) -> Decision:
    """Every stream, bucket and subject a nats_* call names must be on its role's read (or write) list."""
    access: NatsRW = "write" if need.access == "write" else "read"
    scope = NatsScope(tuple(r.nats for r in roles))
    for field, kind in need.checks:
        value = arguments.get(field)
        names = value if isinstance(value, list) else [] if value is None else [value]
        for name in names:
            if not scope.allows(kind, access, str(name)):
                return Decision(False, f"the policy does not allow {access} access to {kind[:-1]} {str(name)[:200]}")
    return ALLOW


_CERT_SOURCES = ("spiffe://", "uri:", "dns:", "cn:")
_WILD = "*?["


def cross_provider_warnings(doc: PolicyDoc) -> list[str]:
    """Principal rules that match identities of more than one provider or certificate source: a subject named by
    one (a user ``alice``, a SPIFFE ID) would also grant its roles to the same string from another (an API key,
    a client-credentials token, a DNS SAN). Not errors: such a rule may be meant, but it should be seen."""
    warnings: list[str] = []
    for i, rule in enumerate(doc.principals):
        where = f"principals[{i}]"
        methods = [
            m
            for m in ("jwt", "introspection", "apikey", "mtls", "local")
            if rule.method is None or fnmatch.fnmatchcase(m, rule.method)
        ]
        if rule.issuer is None and len(methods) > 1:
            warnings.append(f"{where}: matches subjects of every provider ({', '.join(methods)}); add method or issuer")
            continue
        mtls_only = methods == ["mtls"] or (rule.issuer is not None and rule.issuer.startswith("mtls"))
        subject = rule.subject
        if not mtls_only or subject is None:
            if mtls_only and rule.issuer is None:
                warnings.append(
                    f"{where}: matches certificate identities of every source (SPIFFE, URI, DNS, CN); "
                    "name a subject or an issuer (mtls is SPIFFE IDs only)"
                )
            continue
        if subject[:1] in _WILD:
            if rule.issuer is None:
                warnings.append(
                    f"{where}: subject {subject!r} matches certificate identities of every source "
                    "(SPIFFE, URI, DNS, CN); start it with spiffe://, uri:, dns: or cn:"
                )
        elif not subject.startswith(_CERT_SOURCES):
            warnings.append(
                f"{where}: subject {subject!r} matches no certificate: non-SPIFFE identities are "
                "prefixed by their source (uri:, dns:, cn:)"
            )
    return warnings


def parse_policy(text: str, where: str = "policy") -> PolicyDoc:
    """Parse and validate a policy document; PolicyError names the file and the problem."""
    return parse_document(text, PolicyDoc, where, PolicyError, "version, roles, principals", "policy")
