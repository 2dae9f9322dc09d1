"""The guard, policy, limits and address filter as pure logic: every control refuses the attack it exists for."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from nats_mcp.api.tools.coordination import needs_of
from nats_mcp.config.security import LockoutSettings, RateSettings, SecuritySettings
from nats_mcp.core.lru import LruTable
from nats_mcp.security.authn import Credentials
from nats_mcp.security.errors import AuthenticationError
from nats_mcp.security.guard import CallContext, Guard, Refused
from nats_mcp.security.ipfilter import IpFilter, parse_peer
from nats_mcp.security.limits import Lockout, RateLimiter, json_too_deep, value_too_deep
from nats_mcp.security.needs import Needs
from nats_mcp.security.policy import Decision, Policy, PolicyError, parse_policy
from nats_mcp.security.principal import Principal, agent_guid
from tests.support.guard import POLICY, Clock, Recorder


def principal(subject: str = "ci-1", issuer: str = "https://idp.example", **kw: Any) -> Principal:
    return Principal(subject=subject, issuer=issuer, method=kw.pop("method", "jwt"), **kw)


# -- policy ---------------------------------------------------------------------------------------


def decide(policy: Policy, p: Principal, tool: str, namespace: str, args: Mapping[str, Any]) -> Decision:
    """The policy's decision on a call of ``tool`` with the needs the tool declares."""
    return policy.decide(p, tool, namespace, args, needs_of(tool))


def uses(*tools: str) -> list[tuple[str, Needs]]:
    """Tools a prompt or completion uses, with their declared needs."""
    return [(tool, needs_of(tool)) for tool in tools]


def test_policy_default_deny_and_role_sources() -> None:
    policy = Policy(parse_policy(POLICY))
    assert decide(policy, principal("stranger"), "channels_read", "team-a", {}).allowed is False
    assert decide(policy, principal(), "channels_read", "team-a", {"channel": "x"}).allowed
    mtls = principal("spiffe://example.org/reader/7", "mtls", method="mtls")
    assert decide(policy, mtls, "channels_read", "other", {"channel": "general"}).allowed
    assert not decide(policy, mtls, "channels_read", "other", {"channel": "secret"}).allowed
    by_scope = principal("x", "y", scopes=frozenset({"mcp:read"}))
    assert decide(policy, by_scope, "channels_list", "any", {}).allowed
    by_group = principal("x", "y", groups=frozenset({"platform-admins"}))
    assert decide(policy, by_group, "dlq_discard", "any", {"itemId": "i"}).allowed


@pytest.mark.parametrize(
    ("tool", "namespace", "args", "allowed"),
    [
        ("channels_send", "team-a", {"channel": "general"}, True),
        ("channels_send", "team-a", {"channel": "dev-x"}, True),
        ("channels_send", "team-a", {"channel": "ops"}, False),  # channel not granted for send
        ("channels_send", "team-b", {"channel": "general"}, False),  # namespace not granted
        ("work_claim", "team-a", {"capability": "python"}, True),
        ("work_claim", "team-a", {"capability": "rust"}, False),  # capability not granted for claim
        ("work_broadcast", "team-a", {"requiredCapability": "rust"}, True),
        ("work_fail", "team-a", {}, False),  # denied explicitly
        ("dlq_retry", "team-a", {}, False),  # admin operation not granted
        ("dlq_list", "team-a", {}, False),  # not in the tool list
    ],
)
def test_policy_resources(tool: str, namespace: str, args: dict[str, Any], allowed: bool) -> None:
    assert decide(Policy(parse_policy(POLICY)), principal(), tool, namespace, args).allowed is allowed


def test_credential_namespace_limit_narrows_the_policy() -> None:
    policy = Policy(parse_policy(POLICY))
    limited = principal(groups=frozenset({"platform-admins"}), namespaces=frozenset({"team-z"}))
    assert decide(policy, limited, "channels_list", "team-z", {}).allowed
    assert not decide(policy, limited, "channels_list", "team-a", {}).allowed


def test_builtin_policy_gives_agent_everything_and_others_nothing() -> None:
    policy = Policy.load(None)
    local = Principal("local", "local", "local", roles=frozenset({"agent"}))
    assert decide(policy, local, "dlq_discard", "any", {}).allowed
    assert not decide(policy, Principal("x", "y", "jwt"), "channels_list", "any", {}).allowed


@pytest.mark.parametrize(
    "text",
    [
        "version: 2\nroles: {}",
        "roles: {a: {tools: ['*']}}\nprincipals: [{subject: x, roles: [b]}]",  # unknown role
        "roles: {a: {tools: ['*'], admin: [root]}}",  # unknown admin operation
        "roles: {a: {tool: ['*']}}",  # typo
        "principals: [{roles: []}]",
        "[not, a, mapping]",
        "roles: {a: {tools: ['*']}}\nprincipals: [{roles: [a]}]",  # matches nobody in particular
        ": : :",
    ],
)
def test_bad_policies_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    assert str(info.value).startswith("p.yaml: ")


def test_policy_load_from_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    assert Policy.load(path).source == str(path)


def test_agent_guid_is_bound_to_issuer_and_subject() -> None:
    a, b = principal("alice"), principal("bob")
    assert agent_guid(a) != agent_guid(b)
    assert agent_guid(a, "x") != agent_guid(a, "y")
    assert agent_guid(a) != agent_guid(principal("alice", "https://other"))
    assert len(agent_guid(a)) == 32


# -- limits ---------------------------------------------------------------------------------------


def test_token_bucket_burst_then_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(RateSettings(rate_per_s=2, burst=3), 100, clock)
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k") == pytest.approx(0.5)
    assert limiter.take("other") == 0.0  # buckets are per key
    clock.now += 0.5
    assert limiter.take("k") == 0.0
    assert limiter.take("k") > 0


def test_lockout_backs_off_exponentially_and_clears_on_success() -> None:
    clock = Clock()
    lock = Lockout(LockoutSettings(max_failures=3, base_s=2, max_s=10, window_s=60), 100, clock)
    assert [lock.failure("k") for _ in range(2)] == [0.0, 0.0]
    assert lock.failure("k") == 2.0
    assert lock.locked_for("k") == 2.0
    assert lock.failure("k") == 4.0
    assert lock.failure("k") == 8.0
    assert lock.failure("k") == 10.0  # capped
    clock.now += 10
    assert lock.locked_for("k") == 0.0
    lock.success("k")
    assert lock.failure("k") == 0.0


def test_state_is_bounded() -> None:
    table: LruTable[str, int] = LruTable(3)
    for i in range(10):
        table.put(str(i), i)
    assert len(table) == 3 and table.get("0") is None and table.get("9") == 9


def test_depth_checks() -> None:
    deep = "[" * 40 + "]" * 40
    assert json_too_deep(deep, 32) and not json_too_deep(deep, 40)
    assert not json_too_deep('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 3)  # brackets in strings
    assert not json_too_deep(r'{"a": "\"[[[["}', 1)
    value: Any = 1
    for _ in range(50):
        value = {"k": value}
    assert value_too_deep(value, 32) and not value_too_deep(value, 50)


# -- address filter -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("10.1.2.3", "10.1.2.3"),
        ("10.1.2.3:5555", "10.1.2.3"),
        ("[::1]:5555", "::1"),
        ("::1", "::1"),
        ("ipv4:127.0.0.1:4000", "127.0.0.1"),
        ("ipv6:[2001:db8::1]:4000", "2001:db8::1"),
        ("ipv6:%5B2001:db8::1%5D:4000", "2001:db8::1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("unix:/tmp/sock", None),
        ("", None),
    ],
)
def test_parse_peer(peer: str, expected: str | None) -> None:
    parsed = parse_peer(peer)
    assert (str(parsed) if parsed else None) == expected


def test_ip_filter_cidr_v4_and_v6() -> None:
    f = IpFilter(allow=["10.0.0.0/8", "2001:db8::/32"], deny=["10.9.0.0/16"])
    assert f.allowed("10.1.2.3:1") and f.allowed("[2001:db8::5]:1")
    assert not f.allowed("10.9.1.1")  # deny wins inside the allowed range
    assert not f.allowed("192.168.1.1") and not f.allowed("[2001:db9::1]:1")
    assert not f.allowed("garbage")  # an unparseable network peer never passes an allow list
    assert f.allowed(None)  # stdio has no address
    assert IpFilter(deny=["::1/128"]).allowed("127.0.0.1") and not IpFilter(deny=["::1/128"]).allowed("[::1]:9")


# -- the guard ------------------------------------------------------------------------------------


def guard(**overrides: Any) -> tuple[Guard, Recorder, Clock]:
    settings = SecuritySettings.model_validate(
        {
            "rate_per_principal": {"rate_per_s": 1, "burst": 2},
            "rate_per_address": {"rate_per_s": 1, "burst": 3},
            "lockout": {"max_failures": 2, "base_s": 5, "max_s": 60, "window_s": 60},
            **overrides,
        }
    )
    recorder, clock = Recorder(), Clock()
    return Guard(settings, Policy(parse_policy(POLICY)), recorder, clock=clock), recorder, clock


async def ok() -> str:
    return "ok"


def outcome(result: str) -> str:
    return result


async def call(g: Guard, p: Principal, tool: str, args: Mapping[str, Any] | None = None, ns: str = "team-a") -> str:
    return await g.call(CallContext(p, "http", ns), tool, args or {}, ok, outcome, needs=needs_of(tool))


async def test_guard_allows_audits_and_refuses_a_denied_tool() -> None:
    g, rec, _ = guard()
    assert await call(g, principal(), "channels_list") == "ok"
    assert rec.records[-1]["kind"] == "tool_call" and rec.records[-1]["outcome"] == "ok"
    with pytest.raises(Refused) as info:
        await call(g, principal(), "dlq_discard", {"itemId": "x"})
    assert info.value.code == "forbidden" and rec.records[-1]["kind"] == "denied"
    with pytest.raises(Refused):
        await call(g, principal(), "channels_list", ns="team-b")  # a denied namespace


async def test_guard_rate_limits_per_principal_and_per_address() -> None:
    g, rec, clock = guard()
    p = principal(peer="10.0.0.1")
    await call(g, p, "channels_list")
    await call(g, p, "channels_list")
    with pytest.raises(Refused) as info:
        await call(g, p, "channels_list")
    assert info.value.code == "rate_limited" and info.value.retry_after_s and rec.records[-1]["kind"] == "rate_limited"
    # a different principal from the same address still draws on the address bucket (burst 3, 2 spent)
    other = principal("ci-2", peer="10.0.0.1")
    await call(g, other, "channels_list")
    with pytest.raises(Refused):
        await call(g, other, "channels_list")
    clock.now += 2
    assert await call(g, p, "channels_list") == "ok"


async def test_guard_refuses_oversize_and_over_deep_arguments() -> None:
    g, rec, _ = guard(max_request_bytes=2048, max_json_depth=8)
    with pytest.raises(Refused) as info:
        await call(g, principal(), "channels_send", {"channel": "general", "message": "x" * 5000})
    assert info.value.code == "limit_exceeded"
    deep: Any = "x"
    for _ in range(20):
        deep = [deep]
    with pytest.raises(Refused):
        await call(g, principal(), "messages_send_direct", {"metadata": {"k": deep}})
    with pytest.raises(Refused):
        g.check_raw(CallContext(principal(), "http", "team-a"), b"[" * 100 + b"]" * 100)
    assert {r["kind"] for r in rec.records} == {"limit_exceeded"}


async def test_guard_address_filter() -> None:
    g, _, _ = guard(ip_deny=["10.0.0.0/8"])
    with pytest.raises(Refused):
        await call(g, principal(peer="10.2.3.4"), "channels_list")
    assert await call(g, principal(peer="192.168.0.1"), "channels_list") == "ok"


async def test_guard_audits_the_outcome_of_a_failing_call() -> None:
    g, rec, _ = guard()

    async def boom() -> str:
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        await g.call(CallContext(principal(), "stdio", "team-a"), "channels_list", {}, boom, outcome, needs=())
    assert rec.records[-1]["outcome"] == "internal"


class FakeProvider:
    """Pure-logic stand-in for an authentication provider (the real providers have their own tests)."""

    def __init__(self) -> None:
        self.good = "good-token"

    async def authenticate(self, credentials: Credentials) -> Principal:
        if credentials.bearer != self.good:
            raise AuthenticationError("bad_signature")
        return principal()


async def test_lockout_after_failures_per_principal_and_address() -> None:
    g, rec, clock = guard()
    provider = FakeProvider()
    bad = Credentials(bearer="nope", peer="10.0.0.7")
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            await g.authenticate(provider, bad, "http")
    # now locked: even the right credential from this address is refused until the lock ends
    good = Credentials(bearer="good-token", peer="10.0.0.7")
    with pytest.raises(AuthenticationError) as info:
        await g.authenticate(provider, good, "http")
    assert info.value.reason in ("locked_out", "bad_signature")
    kinds = [r["kind"] for r in rec.records]
    assert kinds.count("auth_failure") >= 2
    # another address is not locked
    assert await g.authenticate(provider, Credentials(bearer="good-token", peer="10.0.0.8"), "http")
    clock.now += 61
    assert await g.authenticate(provider, good, "http")
    assert all("good-token" not in str(r) and "nope" not in str(r) for r in rec.records)


async def test_lockout_counts_per_address_whether_keys_come_as_api_key_or_bearer() -> None:
    # Changed by issue 19 #6: the lock was per claimed key id, so guessing a victim's id locked the victim out.
    # Now failures count per address, and a key that verified gets in from a locked address in either form.
    g, _, _ = guard()

    class Keys:
        async def authenticate(self, credentials: Credentials) -> Principal:
            if (credentials.api_key or credentials.bearer) != "nmk_good_secret":
                raise AuthenticationError("bad_signature")
            return principal()

    assert await g.authenticate(Keys(), Credentials(bearer="nmk_good_secret", peer="10.0.0.7"), "grpc")
    # gRPC sends API keys as bearers: guesses count against the address whatever key id they name
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            await g.authenticate(Keys(), Credentials(bearer="nmk_victim_guess", peer="10.0.0.7"), "grpc")
    with pytest.raises(AuthenticationError) as info:
        await g.authenticate(Keys(), Credentials(bearer="nmk_victim_guess", peer="10.0.0.7"), "grpc")
    assert info.value.reason == "locked_out"
    assert await g.authenticate(Keys(), Credentials(bearer="nmk_good_secret", peer="10.0.0.7"), "grpc")
    assert await g.authenticate(Keys(), Credentials(api_key="nmk_good_secret", peer="10.0.0.7"), "http")
    # another key id guessed as an api_key meets the same lock
    with pytest.raises(AuthenticationError) as info:
        await g.authenticate(Keys(), Credentials(api_key="nmk_other_guess", peer="10.0.0.7"), "http")
    assert info.value.reason == "locked_out"


# -- agent names, pooled resources, unknown tools, queue reads -------------------------------------


async def test_agent_names_share_the_principals_rate_limit() -> None:
    g, rec, _ = guard()
    await call(g, principal(agent="a-1"), "channels_list")
    await call(g, principal(agent="a-2"), "channels_list")
    with pytest.raises(Refused) as info:  # a third name is no fresh bucket: the principal's burst (2) is spent
        await call(g, principal(agent="a-3"), "channels_list")
    assert info.value.code == "rate_limited" and rec.records[-1]["kind"] == "rate_limited"


async def test_distinct_agent_names_are_capped_per_principal_and_forgotten_when_idle() -> None:
    g, rec, clock = guard(
        max_agents_per_principal=2, agent_idle_s=60, rate_per_principal={"rate_per_s": 100, "burst": 100}
    )
    for name in ("a-1", "a-2", "a-1"):
        await call(g, principal(agent=name), "channels_list")
    with pytest.raises(Refused) as info:
        await call(g, principal(agent="a-3"), "channels_list")
    assert info.value.code == "limit_exceeded" and "2 agent names" in info.value.message
    assert (rec.records[-1]["kind"], rec.records[-1]["reason"]) == ("limit_exceeded", "too_many_agents")
    assert await call(g, principal("ci-2", agent="a-3"), "channels_list") == "ok"  # another principal: its own
    clock.now += 61  # both names idle past the window: they no longer count
    assert await call(g, principal(agent="a-3"), "channels_list") == "ok"


def test_a_roles_max_agents_overrides_the_setting() -> None:
    policy = Policy(
        parse_policy(
            "version: 1\nroles: {fleet: {tools: ['*'], namespaces: ['*'], max_agents: 50}}\n"
            "principals: [{subject: 'ci-*', roles: [fleet]}]\n"
        )
    )
    assert policy.max_agents(principal(), 16) == 50
    assert policy.max_agents(principal("other"), 16) == 16


async def test_one_principal_exhausting_its_share_of_a_pool_does_not_refuse_another() -> None:
    g, rec, _ = guard(pools={"listen": {"total": 3, "per_principal": 2}})
    ctx, other = CallContext(principal(), "http", "team-a"), CallContext(principal("ci-2"), "http", "team-a")
    held = [g.acquire(ctx, "listen", "subscriptions_listen") for _ in range(2)]
    with pytest.raises(Refused) as info:
        g.acquire(ctx, "listen", "subscriptions_listen")
    assert info.value.code == "limit_exceeded" and rec.records[-1]["reason"] == "listen_share_exhausted"
    release = g.acquire(other, "listen", "subscriptions_listen")  # the other principal still gets one
    with pytest.raises(Refused):  # ...and the process-wide cap holds for everyone
        g.acquire(CallContext(principal("ci-3"), "http", "team-a"), "listen", "subscriptions_listen")
    assert rec.records[-1]["reason"] == "listen_pool_exhausted"
    held.pop()()
    release()
    g.acquire(ctx, "listen", "subscriptions_listen")  # given back: taken again


async def test_waiting_claims_hold_a_slot_and_an_immediate_claim_does_not() -> None:
    g, rec, _ = guard(
        pools={"claim_waits": {"total": 10, "per_principal": 1}}, rate_per_principal={"rate_per_s": 100, "burst": 100}
    )
    ctx = CallContext(principal(), "http", "team-a")

    async def inner_claim() -> str:  # while the first claim waits, a second one of the same principal is refused
        with pytest.raises(Refused) as info:
            await g.call(ctx, "work_claim", {"capability": "python"}, ok, outcome, needs=needs_of("work_claim"))
        assert info.value.code == "limit_exceeded"
        return await g.call(
            ctx, "work_claim", {"capability": "python", "timeout": 0}, ok, outcome, needs=needs_of("work_claim")
        )

    assert (
        await g.call(
            ctx,
            "work_claim",
            {"capability": "python", "timeout": 5000},
            inner_claim,
            outcome,
            needs=needs_of("work_claim"),
        )
        == "ok"
    )
    assert [r["reason"] for r in rec.records if r["kind"] == "limit_exceeded"] == ["claim_waits_share_exhausted"]
    assert g.pools["claim_waits"].in_use == 0


async def test_waiting_reads_hold_a_read_waits_slot_and_an_immediate_read_does_not() -> None:
    g, rec, _ = guard(
        pools={"read_waits": {"total": 10, "per_principal": 1}}, rate_per_principal={"rate_per_s": 100, "burst": 100}
    )
    ctx = CallContext(principal(), "http", "team-a")
    needs = needs_of("messages_read_direct")

    async def inner_read() -> str:  # while one read waits, a second waiting read of the same principal is refused
        assert g.pools["read_waits"].in_use == 1 and g.pools["claim_waits"].in_use == 0
        with pytest.raises(Refused) as info:
            await g.call(ctx, "messages_read_direct", {"waitMs": 1}, ok, outcome, needs=needs)
        assert info.value.code == "limit_exceeded" and "waiting reads" in info.value.message
        return await g.call(ctx, "messages_read_direct", {"waitMs": 0}, ok, outcome, needs=needs)

    assert await g.call(ctx, "messages_read_direct", {"waitMs": 5000}, inner_read, outcome, needs=needs) == "ok"
    assert [r["reason"] for r in rec.records if r["kind"] == "limit_exceeded"] == ["read_waits_share_exhausted"]
    assert g.pools["read_waits"].in_use == 0
    assert await g.call(ctx, "messages_read_direct", {}, ok, outcome, needs=needs) == "ok"  # waitMs omitted: 0


async def test_unknown_tools_are_rate_limited_and_audited() -> None:
    g, rec, _ = guard()
    ctx = CallContext(principal(), "http", "team-a")
    g.admit(ctx, "nats_publish", {"subject": "x"}, "unknown_tool")
    assert (rec.records[-1]["kind"], rec.records[-1]["tool"], rec.records[-1]["outcome"]) == (
        "tool_call",
        "nats_publish",
        "unknown_tool",
    )
    g.admit(ctx, "x" * 1000, None, "unknown_tool")
    assert len(rec.records[-1]["tool"]) == 128
    with pytest.raises(Refused) as info:
        g.admit(ctx, "nats_kv_get", None, "unknown_tool")
    assert info.value.code == "rate_limited" and rec.records[-1]["kind"] == "rate_limited"


@pytest.mark.parametrize(
    ("tool", "args", "allowed"),
    [
        ("work_list", {"capability": "python"}, True),  # claim grant
        ("work_list", {"capability": "go"}, True),  # broadcast grant ('*')
        ("work_queue_status", {}, True),
        ("dlq_list", {"capability": "python"}, False),  # the role does not grant the dlq_* tools at all
    ],
)
def test_queue_reads_need_a_claim_or_broadcast_grant(tool: str, args: dict[str, Any], allowed: bool) -> None:
    policy = Policy(parse_policy(POLICY))
    assert decide(policy, principal(), tool, "team-a", args).allowed is allowed


def test_a_claim_only_role_reads_only_its_capabilities_queues() -> None:
    policy = Policy(
        parse_policy(
            "version: 1\nroles: {py: {tools: ['*'], namespaces: ['*'], capabilities: "
            "{claim: ['python']}}}\nprincipals: [{subject: 'ci-*', roles: [py]}]\n"
        )
    )
    p = principal()
    for tool in ("work_list", "work_queue_status", "dlq_list"):
        assert decide(policy, p, tool, "team-a", {"capability": "python"}).allowed
        refused = decide(policy, p, tool, "team-a", {"capability": "secret"})
        assert not refused.allowed and "claim or broadcast grant" in refused.reason
    assert decide(policy, p, "work_queue_status", "team-a", {}).allowed  # allowed, and narrowed to python:
    readable = policy.capability_reader(p)
    assert readable is not None and readable("python") and not readable("secret")
    assert Policy(parse_policy(POLICY)).capability_reader(principal()) is None  # a '*' grant sees every queue


def test_rate_left_reads_the_bucket_without_spending() -> None:
    clock = Clock()
    limiter = RateLimiter(RateSettings(rate_per_s=1, burst=4), 100, clock)
    assert limiter.left("k") == 1.0  # never seen: a full burst
    limiter.take("k")
    limiter.take("k")
    limiter.take("k")
    assert limiter.left("k") == pytest.approx(0.25)
    assert limiter.left("k") == pytest.approx(0.25)  # reading spends nothing
    clock.now += 1
    assert limiter.left("k") == pytest.approx(0.5)


async def test_admit_uses_needs_every_tool_and_audits_either_way() -> None:
    g, rec, clock = guard()
    ctx = CallContext(principal(), "http", "team-a")
    g.admit_uses(ctx, "prompts_get", {"name": "work-loop"}, uses("work_claim", "work_complete"))
    assert rec.records[-1]["kind"] == "tool_call"
    assert rec.records[-1]["tool"] == "prompts_get" and rec.records[-1]["outcome"] == "ok"
    with pytest.raises(Refused) as info:  # work_fail is denied to the role: the whole prompt is
        g.admit_uses(ctx, "prompts_get", {"name": "work-loop"}, uses("work_claim", "work_fail"))
    assert info.value.code == "forbidden" and "work_fail" in info.value.message
    assert rec.records[-1]["kind"] == "denied" and rec.records[-1]["reason"] == "policy_denied"
    clock.now += 10  # the burst (2) is back
    with pytest.raises(Refused) as info:  # a namespace the role does not have
        g.admit_uses(CallContext(principal(), "http", "team-b"), "prompts_get", {}, uses("work_claim"))
    assert info.value.code == "forbidden"
    g.admit_uses(ctx, "completion_complete", {}, uses())
    with pytest.raises(Refused) as info:  # and the rate limit: the burst is spent
        g.admit_uses(ctx, "completion_complete", {}, uses())
    assert info.value.code == "rate_limited"
    assert g.rate_left(principal()) == pytest.approx(0.0, abs=0.01)
    local = Principal(subject="me", issuer="local", method="local")
    assert g.rate_left(local) is None  # the local principal is not rate limited by default
