"""The guard: the one place every tool call on every transport is admitted, limited, authorized and audited.

Transports only say who the caller is (a :class:`~nats_mcp.security.principal.Principal`, from
:meth:`Guard.authenticate` or the local identity) and hand each call to :meth:`Guard.call`. The order
is fixed: address filter, rate limits (per principal, whatever agent names it uses, and per address),
the principal's cap on distinct agent names, request size and depth, the policy (default deny), a slot
of a pooled resource where the call holds one (a waiting claim), then the call itself; every refusal and
every call leaves one audit record. Calls of tool names that do not exist (:meth:`Guard.admit`) pass the
same limits and are audited too. Long-lived holds (listen streams, resource subscriptions) take a slot
with :meth:`Guard.hold`: one principal holds at most its share of each pool, so it cannot starve others.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from nats_mcp.bus.errors import NatsUnavailableError
from nats_mcp.config.security import SecuritySettings
from nats_mcp.core import reqctx
from nats_mcp.core.errors import NatsMcpError
from nats_mcp.core.lru import LruTable
from nats_mcp.security.audit.event import AuditEvent, AuditKind, AuditRecorder, NoAudit
from nats_mcp.security.authn import Credentials, Provider
from nats_mcp.security.authn.bearer import credential_kind
from nats_mcp.security.errors import AuthenticationError
from nats_mcp.security.ipfilter import IpFilter
from nats_mcp.security.limits import AgentNames, Lockout, RateLimiter, Shares, json_too_deep, value_too_deep
from nats_mcp.security.needs import Needs, waits
from nats_mcp.security.policy import Policy
from nats_mcp.security.principal import Principal

log = logging.getLogger("nats_mcp.security")

T = TypeVar("T")
RefusalCode = Literal["forbidden", "rate_limited", "limit_exceeded"]
Pool = Literal["listen", "watches", "claim_waits", "read_waits"]
MAX_AUDITED_NAME = 128
NOT_GUESSES = frozenset({"missing_credentials", "unavailable", "expired", "not_yet_valid", "revoked"})
"""Failures that are no evidence of guessing, so do not count towards an address's lockout: no credential at all (an
MCP client's first, discovery request), one that could not be checked (NATS or the IdP away), or a genuine one past
its time or withdrawn (a stale client retrying it must not lock out everyone behind its NAT; only the holder of a
real credential can produce these)."""
STALE = frozenset({"expired", "not_yet_valid", "revoked"})
"""Failures of a genuine credential: they count against that exact credential (its fingerprint), which no one but its
holder can present, so retrying it is slowed without touching anyone else."""


_POOL_NAMES: dict[Pool, str] = {
    "listen": "listen streams",
    "watches": "resource subscriptions",
    "claim_waits": "waiting claims",
    "read_waits": "waiting reads",
}


class Refused(NatsMcpError):
    """A call the guard does not let through; ``code`` is the tool contract's error code."""

    def __init__(self, code: RefusalCode, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code: RefusalCode = code
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class CallContext:
    """Who calls, over what, acting in which namespace."""

    principal: Principal
    transport: str
    namespace: str


def address_key(peer: str | None) -> str:
    """The lockout key of a sender: its address, an IPv6 one by its /64 (one host usually holds a whole /64, and
    must not get a fresh failure budget per address in it)."""
    if not peer:
        return "-"
    try:
        ip = ipaddress.ip_address(peer)
    except ValueError:
        return peer[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def fingerprint(credentials: Credentials) -> bytes | None:
    """SHA-256 of the presented credential (never the credential itself): how a credential that verified is
    recognised again without verifying it first."""
    secret = credentials.api_key or credentials.bearer
    if secret:
        return hashlib.sha256(b"s\0" + secret.encode()).digest()
    if credentials.peer_cert:
        return hashlib.sha256(b"c\0" + json.dumps(credentials.peer_cert, sort_keys=True, default=str).encode()).digest()
    return None


class Guard:
    """Admission, limits, authorization and audit for one server process."""

    def __init__(
        self,
        settings: SecuritySettings,
        policy: Policy,
        audit: AuditRecorder | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        settle: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.audit: AuditRecorder = audit or NoAudit()
        self._settle = settle
        """Awaited before a call is answered (``security.audit.durability: sync``: until its record is stored)."""
        self.ip = IpFilter(settings.ip_allow, settings.ip_deny)
        self.per_principal = RateLimiter(settings.rate_per_principal, settings.state_max_entries, clock)
        self.per_address = RateLimiter(settings.rate_per_address, settings.state_max_entries, clock)
        self.lockout = Lockout(settings.lockout, settings.state_max_entries, clock)
        self.known_good: LruTable[bytes, float] = LruTable(settings.state_max_entries)
        """Fingerprints of credentials that verified, and until when (monotonic): they pass an address's lock."""
        self._clock = clock
        self.agent_names = AgentNames(settings.agent_idle_s, settings.state_max_entries, clock)
        pools = settings.pools
        self.pools: dict[Pool, Shares] = {
            "listen": Shares(pools.listen),
            "watches": Shares(pools.watches),
            "claim_waits": Shares(pools.claim_waits),
            "read_waits": Shares(pools.read_waits),
        }

    # -- authentication --------------------------------------------------------------------------

    async def authenticate(self, provider: Provider, credentials: Credentials, transport: str) -> Principal:
        """Authenticate through ``provider`` with the address filter and the per-address lockout around it; audited
        on failure.

        Raises AuthenticationError; its ``reason`` is for the audit log, the caller should answer generically.
        """
        peer = credentials.peer
        if not self.ip.allowed(peer):
            self.audit.record(
                AuditEvent(
                    "denied",
                    principal=None,
                    transport=transport,
                    peer=peer,
                    outcome="forbidden",
                    reason="address_denied",
                )
            )
            raise AuthenticationError("address_denied")
        # Failures count per sender address, never per claimed identity: a claim is unverified, and keying on
        # it let anyone name a victim (a forged JWT's iss/sub, a guessed key id) and lock the victim out. A locked
        # address is refused before any verification (no scrypt, no introspection request), except for a
        # credential that verified within the lockout window: the attacker's failures never shut out a working
        # credential, even one sharing the attacker's address (NAT, an ingress).
        key = address_key(peer)
        digest = fingerprint(credentials)
        now = self._clock()
        known_until = self.known_good.get(digest) if digest is not None else None
        known = known_until is not None and known_until > now
        locked = 0.0 if known else self.lockout.locked_for(key)
        if digest is not None and not locked:
            locked = self.lockout.locked_for("cred:" + digest.hex())
        if locked > 0:
            self.audit.record(
                AuditEvent(
                    "locked_out",
                    principal=None,
                    transport=transport,
                    peer=peer,
                    outcome="forbidden",
                    reason="locked_out",
                    method=credential_kind(credentials),
                ),
            )
            raise AuthenticationError("locked_out", f"retry in {locked:.0f}s")
        try:
            principal = await provider.authenticate(credentials)
        except AuthenticationError as exc:
            if digest is not None:
                self.known_good.pop(digest)  # revoked or expired since: no longer passes a lock
            lock = self.lockout.failure(key) if exc.reason not in NOT_GUESSES else 0.0
            if digest is not None and exc.reason in STALE:
                lock = self.lockout.failure("cred:" + digest.hex())
            self.audit.record(
                AuditEvent(
                    "auth_failure",
                    principal=None,
                    transport=transport,
                    peer=peer,
                    outcome="unauthenticated",
                    reason=exc.reason + ("+locked" if lock else ""),
                    method=credential_kind(credentials),
                ),
            )
            raise
        # A success does not clear the address's failures: an attacker would interleave a key of its own.
        if digest is not None:
            self.known_good.put(digest, now + self.settings.lockout.window_s)
        return principal

    # -- calls -----------------------------------------------------------------------------------

    def visible(self, principal: Principal, tool: str, needs: Needs) -> bool:
        """Whether ``tools/list`` shows ``tool`` (a name without prefix, declaring ``needs``) to this principal."""
        return self.policy.tool_allowed(principal, tool, needs)

    def check_raw(self, ctx: CallContext, raw: bytes) -> None:
        """Size and depth of a request body before it is parsed (network transports call this first)."""
        limit = self.settings.max_request_bytes
        if len(raw) > limit:
            self._refuse(
                ctx,
                None,
                "limit_exceeded",
                "limit_exceeded",
                f"the request is {len(raw)} bytes; the limit is {limit}",
                reason="request_too_large",
            )
        if json_too_deep(raw, self.settings.max_json_depth):
            self._refuse(
                ctx,
                None,
                "limit_exceeded",
                "limit_exceeded",
                f"the request nests deeper than {self.settings.max_json_depth} levels",
                reason="request_too_deep",
            )

    async def call(
        self,
        ctx: CallContext,
        tool: str,
        arguments: Mapping[str, Any] | None,
        run: Callable[[], Awaitable[T]],
        outcome_of: Callable[[T], str],
        *,
        needs: Needs,
    ) -> T:
        """Admit, limit, authorize, run and audit one call of ``tool`` (its name without prefix), checked against the
        ``needs`` it declares (security/needs.py; ``()`` for a tool touching nothing the policy guards)."""
        args: Mapping[str, Any] = arguments or {}
        principal, peer = ctx.principal, ctx.principal.peer
        self._limit(ctx, tool, args)
        decision = self.policy.decide(principal, tool, ctx.namespace, args, needs)
        if not decision.allowed:
            self._refuse(ctx, tool, "denied", "forbidden", decision.reason, arguments=args, reason="policy_denied")
        wait = waits(needs)
        holding = (
            self.hold(ctx, wait.pool, tool)
            if wait is not None and args.get(wait.arg, wait.default_ms) != 0
            else contextlib.nullcontext()
        )
        with holding:
            started = time.perf_counter()
            outcome = "internal"
            scope = reqctx.enter(principal.subject, tool)  # for log lines written during the call
            try:
                result = await run()
                outcome = outcome_of(result)
            finally:
                reqctx.leave(scope)
                self.audit.record(
                    AuditEvent(
                        "tool_call",
                        principal=principal,
                        transport=ctx.transport,
                        peer=peer,
                        tool=tool,
                        namespace=ctx.namespace,
                        outcome=outcome,
                        latency_ms=(time.perf_counter() - started) * 1000,
                        arguments=args,
                    ),
                )
            if self._settle is not None and not await self._settle():
                # The call ran, but its record is not stored: with durable audit, no answer claims success.
                raise NatsUnavailableError("the audit record of this call could not be stored (audit durability sync)")
            return result

    def admit(self, ctx: CallContext, name: str, arguments: Mapping[str, Any] | None, outcome: str) -> None:
        """Limit and audit a request that authorizes nothing: a call of a tool that does not exist (``outcome``
        ``unknown_tool``; probing for names costs rate and leaves a record), a listen stream naming no resource.

        Raises Refused like :meth:`call`; the transport then answers the request as it would anyway.
        """
        args: Mapping[str, Any] = arguments or {}
        name = name[:MAX_AUDITED_NAME]
        self._limit(ctx, name, args)
        self.audit.record(
            AuditEvent(
                "tool_call",
                principal=ctx.principal,
                transport=ctx.transport,
                peer=ctx.principal.peer,
                tool=name,
                namespace=ctx.namespace,
                outcome=outcome,
                latency_ms=0.0,
                arguments=args,
            ),
        )

    def admit_uses(
        self,
        ctx: CallContext,
        name: str,
        arguments: Mapping[str, Any] | None,
        tools: Iterable[tuple[str, Needs]],
    ) -> None:
        """Limit, authorize and audit a request that runs no tool but helps use some (``prompts/get``,
        ``completion/complete``): the principal must be allowed every tool of ``tools`` (name, its declared needs)
        in its namespace.

        Raises Refused (``forbidden``, audited as denied) like :meth:`call`; admitted, it is audited as ``ok``.
        """
        args: Mapping[str, Any] = arguments or {}
        name = name[:MAX_AUDITED_NAME]
        self._limit(ctx, name, args)
        principal, policy = ctx.principal, self.policy
        for tool, needs in tools:
            if not (policy.tool_allowed(principal, tool, needs) and policy.namespace_allowed(principal, ctx.namespace)):
                self._refuse(
                    ctx,
                    name,
                    "denied",
                    "forbidden",
                    f"the policy does not allow {tool}, which this uses",
                    arguments=args,
                    reason="policy_denied",
                )
        self.audit.record(
            AuditEvent(
                "tool_call",
                principal=principal,
                transport=ctx.transport,
                peer=principal.peer,
                tool=name,
                namespace=ctx.namespace,
                outcome="ok",
                latency_ms=0.0,
                arguments=args,
            ),
        )

    def rate_left(self, principal: Principal) -> float | None:
        """The share of its per-principal burst the principal has left (0..1), None when it is not limited."""
        if principal.method == "local" and not self.settings.local.rate_limited:
            return None
        return self.per_principal.left(principal.key)

    def acquire(self, ctx: CallContext, pool: Pool, tool: str) -> Callable[[], None]:
        """Take one slot of ``pool`` for the principal; returns what gives it back (call it exactly once).

        ``limit_exceeded`` (audited) when the principal holds its whole share, or the process the whole pool.
        """
        shares, key = self.pools[pool], ctx.principal.key
        exhausted = shares.take(key)
        if exhausted == "share":
            self._refuse(
                ctx,
                tool,
                "limit_exceeded",
                "limit_exceeded",
                f"this principal already holds {shares.held(key)} {_POOL_NAMES[pool]}, its share; end one first",
                reason=f"{pool}_share_exhausted",
            )
        elif exhausted == "pool":
            self._refuse(
                ctx,
                tool,
                "limit_exceeded",
                "limit_exceeded",
                f"this server holds its maximum of {shares.total} {_POOL_NAMES[pool]}; try again later",
                reason=f"{pool}_pool_exhausted",
            )
        return functools.partial(shares.give, key)

    @contextlib.contextmanager
    def hold(self, ctx: CallContext, pool: Pool, tool: str) -> Iterator[None]:
        """One slot of ``pool`` while the block runs (see :meth:`acquire`)."""
        release = self.acquire(ctx, pool, tool)
        try:
            yield
        finally:
            release()

    def _limit(self, ctx: CallContext, tool: str, args: Mapping[str, Any]) -> None:
        """Address filter, rate limits, the agent-name cap, size and depth: everything but the policy."""
        principal, peer = ctx.principal, ctx.principal.peer
        if not self.ip.allowed(peer):
            self._refuse(
                ctx, tool, "denied", "forbidden", "calls from this address are not allowed", reason="address_denied"
            )
        exempt = principal.method == "local" and not self.settings.local.rate_limited
        # Per principal, not per agent: agent names are the caller's choice, and must not multiply its rate.
        wait = 0.0 if exempt else self.per_principal.take(principal.key)
        if not wait and peer:
            wait = self.per_address.take(peer)
        if wait:
            self._refuse(
                ctx,
                tool,
                "rate_limited",
                "rate_limited",
                f"too many calls; retry in {wait:.2f}s",
                retry_after_s=wait,
                reason="rate_limited",
            )
        limit = self.policy.max_agents(principal, self.settings.max_agents_per_principal)
        others = self.agent_names.use(principal.key, principal.agent or "", limit)
        if others:
            self._refuse(
                ctx,
                tool,
                "limit_exceeded",
                "limit_exceeded",
                f"this principal already acts as {others} agent names, its limit; reuse one of them "
                f"(a name unused for {self.settings.agent_idle_s:g}s no longer counts)",
                reason="too_many_agents",
            )
        self._check_size(ctx, tool, args)

    def _check_size(self, ctx: CallContext, tool: str, args: Mapping[str, Any]) -> None:
        s = self.settings
        if value_too_deep(args, s.max_json_depth):
            self._refuse(
                ctx,
                tool,
                "limit_exceeded",
                "limit_exceeded",
                f"the arguments nest deeper than {s.max_json_depth} levels",
                reason="request_too_deep",
            )
        try:
            size = len(json.dumps(args, separators=(",", ":"), ensure_ascii=False, default=str).encode())
        except (TypeError, ValueError):
            size = 0
        if size > s.max_request_bytes:
            self._refuse(
                ctx,
                tool,
                "limit_exceeded",
                "limit_exceeded",
                f"the arguments are {size} bytes; the limit is {s.max_request_bytes}",
                reason="request_too_large",
            )

    def _refuse(
        self,
        ctx: CallContext,
        tool: str | None,
        kind: AuditKind,
        code: RefusalCode,
        message: str,
        *,
        reason: str,
        retry_after_s: float | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        """Audit the refusal with a short reason code (the message, for the caller, may hold details)."""
        self.audit.record(
            AuditEvent(
                kind,
                principal=ctx.principal,
                transport=ctx.transport,
                peer=ctx.principal.peer,
                tool=tool,
                namespace=ctx.namespace,
                outcome=code,
                arguments=arguments,
                reason=reason,
            ),
        )
        raise Refused(code, message, retry_after_s=retry_after_s)
