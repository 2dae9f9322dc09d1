"""The prompt catalogue: how-to prompts (slash commands in Claude Code) naming the exact tools and arguments.

Each prompt lists the tools it walks the agent through (:attr:`PromptSpec.tools`, names without prefix). The
policy rule is: a caller sees a prompt in ``prompts/list`` and may get it only if it may call *every* one of
those tools (a prompt that tells an agent to call a tool it may not call only produces refusals). Pure data and
text here; the handlers and the guard are in :mod:`nats_mcp.api.assist`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import mcp_types as types

Kind = Literal["handle", "capability", "channel", "agent_handle", "text", "number"]
"""What an argument holds: it decides its completions (``text`` and ``number`` have none)."""


@dataclass(frozen=True)
class ArgSpec:
    name: str
    description: str
    required: bool
    kind: Kind


@dataclass(frozen=True)
class PromptSpec:
    name: str
    title: str
    description: str
    args: tuple[ArgSpec, ...]
    tools: tuple[str, ...]
    render: Callable[[str, Mapping[str, str]], str]
    """(tool prefix, arguments given) -> the user message."""

    def describe(self) -> types.Prompt:
        return types.Prompt(
            name=self.name,
            title=self.title,
            description=self.description,
            arguments=[
                types.PromptArgument(name=a.name, description=a.description, required=a.required) for a in self.args
            ],
        )


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _join_team(p: str, a: Mapping[str, str]) -> str:
    handle = a["handle"]
    agent_type = a.get("agentType") or "developer"
    caps = _csv(a.get("capabilities", ""))
    channel = a.get("channel")
    read = (
        f'4. Read the channel #{channel}: {p}channels_read {{"channel": "{channel}"}}; page back with its nextCursor.'
        if channel
        else f'4. Read each channel that matters to you: {p}channels_read {{"channel": "<name>"}}; page back with '
        "its nextCursor."
    )
    return "\n".join(
        [
            "Join the team on nats-mcp. Call these tools in order and stop at the first error (its text says why):",
            f'1. {p}handle_set {{"handle": "{handle}"}} - the name your messages are signed with.',
            f'2. {p}registry_register {{"agentType": {json.dumps(agent_type)}, '
            f'"capabilities": {json.dumps(caps)}}} - so '
            "teammates can find you and send you work (capabilities are the work queues you can serve).",
            f"3. {p}channels_list {{}} - the team's channels and what each is for.",
            read,
            f"Then say hello on a channel you may post to: {p}channels_send "
            '{"channel": "<name>", "message": "<hello, what you work on>"}.',
        ]
    )


def _work_loop(p: str, a: Mapping[str, str]) -> str:
    cap = a["capability"]
    timeout = a.get("timeout") or "30000"
    return "\n".join(
        [
            f'Work through the "{cap}" queue. Repeat until a claim returns no work:',
            f'1. Claim: {p}work_claim {{"capability": "{cap}", "timeout": {timeout}}} (timeout in ms, at most 30000; '
            "workItem null means the queue is empty for now).",
            f'2. While you work, report progress: {p}work_progress {{"workItemId": "<id>", "progress": <0-100>, '
            '"note": "<what you did>"} - this also renews your lease, so do it before the item\'s leaseExpiresAt '
            "(an expired lease offers the item to others).",
            f'3. Done: {p}work_complete {{"workItemId": "<id>", "result": "<what you produced>"}}.',
            f'   Failed: {p}work_fail {{"workItemId": "<id>", "reason": "<why>", "recoverable": true}} - recoverable '
            "true offers it again after a backoff, false (or its last attempt) sends it to the dead-letter queue.",
            "Never leave a claimed item without completing or failing it.",
        ]
    )


def _hand_off(p: str, a: Mapping[str, str]) -> str:
    task = a["task"]
    to, cap = a.get("to"), a.get("capability")
    lines = [f"Hand this task to a teammate: {task}"]
    if to:
        lines += [
            f'1. Find the agent with handle "{to}" in {p}registry_discover {{}} (its agents list; take its guid).',
            f'2. Send it the task: {p}messages_send_direct {{"recipientGuid": "<guid>", "message": "<the task, '
            'with all the context it needs>", "messageType": "task"}.',
        ]
    if cap or not to:
        queue = cap or "<capability>"
        lines += [
            f'{"3. Or broadcast" if to else "Broadcast"} it to whoever serves "{queue}" (see who does with '
            f'{p}registry_discover {{"capability": "{queue}"}}): {p}work_broadcast {{"taskId": "<a short id>", '
            f'"description": "<the task, self-contained>", "requiredCapability": "{queue}", "priority": 5}} '
            "(priority 1-10, higher is claimed first).",
        ]
    lines.append("Include everything the teammate needs: it has not seen this conversation.")
    return "\n".join(lines)


PROMPTS: tuple[PromptSpec, ...] = (
    PromptSpec(
        "join-team",
        "Join the team",
        "Set a handle, register with your capabilities and read the team's channels.",
        (
            ArgSpec("handle", "Your handle: the name teammates see on your messages.", True, "handle"),
            ArgSpec(
                "agentType", "What kind of agent you are (developer, reviewer, ...); default developer.", False, "text"
            ),
            ArgSpec(
                "capabilities",
                "Comma-separated capabilities you can serve (work queues), e.g. python,review.",
                False,
                "capability",
            ),
            ArgSpec("channel", "A channel to read first.", False, "channel"),
        ),
        ("handle_set", "registry_register", "channels_list", "channels_read", "channels_send"),
        _join_team,
    ),
    PromptSpec(
        "work-loop",
        "Work a capability queue",
        "Claim work for a capability, report progress, then complete or fail each item.",
        (
            ArgSpec("capability", "The capability whose queue to work.", True, "capability"),
            ArgSpec(
                "timeout", "How long each claim waits for work, in ms (default 30000, at most 30000).", False, "number"
            ),
        ),
        ("work_claim", "work_progress", "work_complete", "work_fail"),
        _work_loop,
    ),
    PromptSpec(
        "hand-off",
        "Hand off a task",
        "Hand a task to a teammate: by direct message to a handle, or broadcast to a capability's queue.",
        (
            ArgSpec("task", "The task to hand off.", True, "text"),
            ArgSpec("to", "The handle of the teammate to send it to.", False, "agent_handle"),
            ArgSpec("capability", "The capability to broadcast it to.", False, "capability"),
        ),
        ("registry_discover", "messages_send_direct", "work_broadcast"),
        _hand_off,
    ),
)

BY_NAME: dict[str, PromptSpec] = {spec.name: spec for spec in PROMPTS}
