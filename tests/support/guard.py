"""Guard test doubles: a policy, a settable clock and an audit recorder."""

from __future__ import annotations

from typing import Any

from nats_mcp.security.audit.event import AuditEvent

POLICY = """
version: 1
roles:
  agent:
    tools: ["channels_*", "registry_*", "work_*", "messages_*", "handle_*"]
    deny_tools: ["work_fail"]
    namespaces: ["team-a"]
    channels: {read: ["*"], send: ["general", "dev-*"]}
    capabilities: {broadcast: ["*"], claim: ["python"]}
  reader:
    tools: ["channels_read", "channels_list"]
    namespaces: ["*"]
    channels: {read: ["general"]}
  admin:
    tools: ["*"]
    namespaces: ["*"]
    admin: [dlq]
principals:
  - {issuer: "https://idp.example", subject: "ci-*", roles: [agent]}
  - {method: mtls, subject: "spiffe://example.org/reader/*", roles: [reader]}
groups: {platform-admins: [admin]}
scopes: {"mcp:read": [reader]}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, event: AuditEvent) -> None:
        self.records.append({"kind": event.kind, **event.fields()})
