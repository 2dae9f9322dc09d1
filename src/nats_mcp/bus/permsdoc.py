"""The NATS permissions document: what one NATS user may publish and subscribe to (with reasons), and its
rendering as a nats-server config stanza. Built by :func:`nats_mcp.bus.natsperms.build_permissions`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

Role = Literal["agent", "gateway", "fleet", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)


@dataclass(frozen=True)
class Rule:
    """One subject of a permission list and why the user needs it."""

    subject: str
    reason: str


@dataclass(frozen=True)
class NatsPermissions:
    """What one NATS user may publish and subscribe to, and what those lists cannot enforce."""

    role: Role
    namespaces: tuple[str, ...]
    agent: str | None
    inbox_prefix: str
    isolate_inbox: bool
    publish_allow: tuple[Rule, ...]
    publish_deny: tuple[Rule, ...]
    subscribe_allow: tuple[Rule, ...]
    subscribe_deny: tuple[Rule, ...]
    caveats: tuple[str, ...]

    def as_dict(self) -> dict[str, dict[str, list[str]]]:
        """``{publish: {allow, deny}, subscribe: {allow, deny}}``, the shape of nats-server's ``permissions``."""
        return {
            "publish": {"allow": _subjects(self.publish_allow), "deny": _subjects(self.publish_deny)},
            "subscribe": {"allow": _subjects(self.subscribe_allow), "deny": _subjects(self.subscribe_deny)},
        }

    def render(self) -> str:
        """The ``permissions: {...}`` stanza (with comments) to paste into a user entry of nats-server's config."""
        return render_block(self)

    def to_json(self) -> dict[str, Any]:
        """Everything, for ``--json``: the lists, the rendered block, the inbox prefix and the caveats."""
        return {
            "role": self.role,
            "namespaces": list(self.namespaces),
            "agent": self.agent,
            "inbox_prefix": self.inbox_prefix,
            "isolate_inbox": self.isolate_inbox,
            "permissions": self.as_dict(),
            "reasons": {
                kind: {rule.subject: rule.reason for rule in rules}
                for kind, rules in (
                    ("publish_allow", self.publish_allow),
                    ("publish_deny", self.publish_deny),
                    ("subscribe_allow", self.subscribe_allow),
                    ("subscribe_deny", self.subscribe_deny),
                )
            },
            "caveats": list(self.caveats),
            "config": self.render(),
        }


def _subjects(rules: Iterable[Rule]) -> list[str]:
    return [rule.subject for rule in rules]


# -- rendering --------------------------------------------------------------------------------------


def _quote(subject: str) -> str:
    # Double quotes: an unquoted $JS... would be read as a config variable.
    return json.dumps(subject)


def _list_lines(name: str, rules: Sequence[Rule], indent: str) -> list[str]:
    if not rules:
        return []
    lines = [f"{indent}{name}: ["]
    for rule in rules:
        lines.append(f"{indent}  {_quote(rule.subject)}  # {_comment(rule.reason)}")
    lines.append(f"{indent}]")
    return lines


def _comment(text: str) -> str:
    return " ".join(text.split())


def render_block(perms: NatsPermissions) -> str:
    """A nats-server config stanza: comments saying what it is for, then ``permissions: { publish, subscribe }``."""
    who = f"role {perms.role}"
    if perms.namespaces:
        who += f", namespace{'s' if len(perms.namespaces) > 1 else ''} {', '.join(perms.namespaces)}"
    if perms.agent:
        who += f", agent {perms.agent}"
    if perms.isolate_inbox:
        who += ", isolated inbox"
    lines = [
        f"# nats-mcp NATS permissions: {who}",
        "# Paste into this user's entry of the server's authorization block, e.g.",
        '#   authorization { users = [ { user: "...", password: "...", permissions: { ... } } ] }',
        f"# The client must connect with inbox prefix {perms.inbox_prefix!r} (nats-py: inbox_prefix=...),",
        "# or the replies to its requests are refused.",
    ]
    if perms.caveats:
        lines.append("# Not enforced by these permissions:")
        lines.extend(f"#  - {_comment(text)}" for text in perms.caveats)
    lines.append("permissions: {")
    for kind, allow, deny in (
        ("publish", perms.publish_allow, perms.publish_deny),
        ("subscribe", perms.subscribe_allow, perms.subscribe_deny),
    ):
        lines.append(f"  {kind}: {{")
        lines += _list_lines("allow", allow, "    ")
        lines += _list_lines("deny", deny, "    ")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
