"""Work boundaries in the policy: which roles reach which boundaries' items, and the broadcast refusal."""

from __future__ import annotations

from typing import Any

import pytest

from nats_mcp.api.tools.coordination import needs_of
from nats_mcp.security.policy import Policy, PolicyError, parse_policy
from nats_mcp.security.principal import Principal

POLICY = """
version: 1
roles:
  plain: {tools: ["*"], namespaces: ["*"], capabilities: {broadcast: [python], claim: [python]}}
  corp: {tools: ["*"], namespaces: ["*"], capabilities: {claim: [python], boundaries: [corporate]}}
  asker: {tools: ["*"], namespaces: ["*"], capabilities: {broadcast: [review], boundaries: ["corp*"]}}
  all: {tools: ["*"], namespaces: ["*"], capabilities: {broadcast: ["*"], claim: ["*"], boundaries: ["*"]}}
"""


def holder(*roles: str) -> Principal:
    return Principal("p-" + "-".join(roles), "local", "local", roles=frozenset(roles))


def broadcast(policy: Policy, p: Principal, capability: str, boundary: str | None) -> bool:
    args: dict[str, Any] = {"taskId": "t", "description": "d", "requiredCapability": capability}
    if boundary is not None:
        args["boundary"] = boundary
    return policy.decide(p, "work_broadcast", "ns", args, needs_of("work_broadcast")).allowed


def test_a_role_reaches_only_the_boundaries_it_lists_beside_its_capabilities() -> None:
    policy = Policy(parse_policy(POLICY))
    plain = policy.boundary_reader(holder("plain"))
    assert plain is not None
    assert not plain("python", "corporate", False) and not plain("python", "corporate", True)
    corp = policy.boundary_reader(holder("corp"))
    assert corp is not None
    assert corp("python", "corporate", True) and corp("python", "corporate", False)
    assert not corp("python", "personal", True) and not corp("rust", "corporate", False)
    asker = policy.boundary_reader(holder("asker"))
    assert asker is not None  # a broadcast grant reads the queue, and never claims from it
    assert asker("review", "corporate", False) and asker("review", "corp-eu", False)
    assert not asker("review", "corporate", True)
    # the grants pair up per role: plain's broadcast of python does not borrow corp's boundary for reading review
    both = policy.boundary_reader(holder("plain", "corp"))
    assert both is not None and both("python", "corporate", True) and not both("review", "corporate", False)
    assert policy.boundary_reader(holder("all")) is None  # '*' everywhere: no narrowing
    assert Policy(parse_policy("version: 1\n")).boundary_reader(holder()) is None  # grants nothing at all
    assert Policy.load(None).boundary_reader(holder("agent")) is None  # the built-in policy reaches every boundary


def test_broadcasting_to_a_boundary_needs_a_role_granting_both() -> None:
    policy = Policy(parse_policy(POLICY))
    assert broadcast(policy, holder("plain"), "python", None)  # unbounded items need no boundary grant
    assert not broadcast(policy, holder("plain"), "python", "corporate")
    decision = policy.decide(
        holder("plain"),
        "work_broadcast",
        "ns",
        {"requiredCapability": "python", "boundary": "corporate"},
        needs_of("work_broadcast"),
    )
    assert "boundary corporate" in decision.reason
    assert broadcast(policy, holder("asker"), "review", "corp-eu")
    assert not broadcast(policy, holder("asker"), "review", "personal")
    assert not broadcast(policy, holder("corp"), "python", "corporate")  # corp may take, not offer
    assert not broadcast(policy, holder("plain", "corp"), "python", "corporate")  # not from two roles' halves
    assert broadcast(policy, holder("all"), "anything", "personal")


@pytest.mark.parametrize("bad", ["Corp", "a.b", "corp>", "-x", "a_b", ""])
def test_a_boundary_grant_must_be_a_name_or_a_star_glob(bad: str) -> None:
    with pytest.raises(PolicyError, match="boundaries"):
        parse_policy(f'version: 1\nroles: {{r: {{capabilities: {{claim: [x], boundaries: ["{bad}"]}}}}}}\n')
