"""The identity-binding boundary: which agent (domain Caller) an authenticated principal acts as in gateway modes.

The GUID is derived from the principal's issuer and subject plus an agent name the policy lets it use,
never taken from the request, so no principal can act as, read the inbox of, or settle the work of
another principal's agent: the domain's ownership checks (inbox owner, work claimer) compare GUIDs.
"""

from __future__ import annotations

from nats_mcp.coord.context import Caller, owner_key
from nats_mcp.core.names import InvalidNameError, validate_name
from nats_mcp.security.guard import Refused
from nats_mcp.security.policy import Policy
from nats_mcp.security.principal import Principal, agent_guid


def caller_for(principal: Principal, policy: Policy, namespace: str, project_id: str) -> Caller:
    """The agent ``principal`` acts as in ``namespace``; ``forbidden`` if it may not use that agent name or
    namespace."""
    agent = principal.agent
    if agent is not None:
        try:
            validate_name(agent, "agent name")
        except InvalidNameError as exc:
            raise Refused("forbidden", str(exc)) from None
    if not policy.agent_allowed(principal, agent):
        raise Refused("forbidden", f"the policy does not let {principal.subject} act as agent {agent or 'default'}")
    if not policy.namespace_allowed(principal, namespace):
        raise Refused("forbidden", f"the policy does not allow namespace {namespace}")
    return Caller(
        guid=agent_guid(principal, agent),
        namespace=namespace,
        project_id=project_id,
        owner=owner_key(principal.subject, principal.issuer),
        hostname=None,
    )
