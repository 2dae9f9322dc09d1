"""The policy's reservation grants: a role reserves only inside its globs; force-release is an admin operation."""

from __future__ import annotations

from typing import Any

import pytest

from nats_mcp.api.tools.coordination import needs_of
from nats_mcp.security.policy import BUILTIN, Policy, PolicyError, parse_policy
from nats_mcp.security.principal import Principal

POLICY = """
version: 1
roles:
  api-dev:
    tools: ["*"]
    namespaces: ["*"]
    reservations: ["src/api/**", "docs/*.md"]
  plain:
    tools: ["*"]
    namespaces: ["*"]
  ops:
    tools: ["*"]
    namespaces: ["*"]
    admin: [reservations]
principals:
  - {subject: "dev", roles: [api-dev]}
  - {subject: "plain", roles: [plain]}
  - {subject: "ops", roles: [ops]}
"""


def who(subject: str) -> Principal:
    return Principal(subject=subject, issuer="https://idp.example", method="jwt")


def allowed(subject: str, tool: str, args: dict[str, Any]) -> bool:
    policy = Policy(parse_policy(POLICY))
    return policy.decide(who(subject), tool, "ns", args, needs_of(tool)).allowed


@pytest.mark.parametrize(
    ("resources", "ok"),
    [
        (["src/api/app.py"], True),
        (["src/api/**", "docs/readme.md"], True),
        (["./src/api//v1/*.py"], True),  # normalised before it is judged
        (["src/api/app.py", "src/web/x.py"], False),  # one resource outside the grant refuses the whole call
        (["src/**"], False),  # wider than the grant
        (["**"], False),
        (["docs/a/b.md"], False),
    ],
)
def test_a_role_reserves_only_inside_its_globs(resources: list[str], ok: bool) -> None:
    assert allowed("dev", "reservations_acquire", {"resources": resources}) is ok


def test_a_role_without_reservation_grants_is_refused() -> None:
    policy = Policy(parse_policy(POLICY))
    decision = policy.decide(
        who("plain"), "reservations_acquire", "ns", {"resources": ["a"]}, needs_of("reservations_acquire")
    )
    assert not decision.allowed and "reserving a" in decision.reason
    assert allowed("plain", "reservations_list", {})  # listing and releasing one's own need no grant
    assert allowed("plain", "reservations_release", {"reservationId": "x"})


def test_force_release_needs_the_admin_operation() -> None:
    assert not allowed("dev", "reservations_force_release", {"reservationId": "x"})
    assert allowed("ops", "reservations_force_release", {"reservationId": "x"})
    policy = Policy(parse_policy(POLICY))
    assert not policy.tool_allowed(who("plain"), "reservations_force_release", needs_of("reservations_force_release"))


def test_the_builtin_role_may_reserve_anything_and_force_release() -> None:
    local = Principal("local", "local", "local", roles=frozenset({"agent"}))
    policy = Policy(BUILTIN)
    assert policy.decide(
        local, "reservations_acquire", "ns", {"resources": ["**", "a/b"]}, needs_of("reservations_acquire")
    ).allowed
    assert policy.admin_allowed(local, "reservations")


def test_a_grant_that_is_no_project_path_is_refused_at_load() -> None:
    with pytest.raises(PolicyError, match="escapes the project"):
        parse_policy("version: 1\nroles: {r: {reservations: ['../x']}}\n")


def test_an_invalid_path_is_left_to_the_tool() -> None:
    """The tool refuses it as invalid_argument (nothing written); the policy does not turn it into forbidden."""
    assert allowed("dev", "reservations_acquire", {"resources": ["../etc/passwd"]})


def test_listing_shows_reservations_of_paths_the_role_may_reserve() -> None:
    policy = Policy(parse_policy(POLICY))
    dev = policy.reservation_reader(who("dev"))
    assert dev is not None
    assert dev("src/api/x.py") and dev("src/**") and dev("**") and dev("docs/readme.md")
    assert not dev("src/web/**") and not dev("deploy/x")
    plain = policy.reservation_reader(who("plain"))
    assert plain is not None and not plain("**")  # no globs: sees none
    local = Principal("local", "local", "local", roles=frozenset({"agent"}))
    assert Policy(BUILTIN).reservation_reader(local) is None  # '**': everything, unfiltered
