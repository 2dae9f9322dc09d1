"""The tool reference boundary: ``docs/tools.md``, rendered from the tool definitions by ``python -m`` this module.

Everything in it comes from what ``tools/list`` serves (names, titles, descriptions, schemas, annotations) and from
the error classes (the codes), so it cannot say what the server does not do; ``tests/unit/api/test_tools_doc.py``
regenerates it and fails when the committed file differs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any, get_args

import mcp_types as types

from nats_mcp.api.about import TITLE
from nats_mcp.api.assist import PROGRESS_INTERVAL_S, RATE_WARN_SHARE
from nats_mcp.api.prompts import PROMPTS, Kind, PromptSpec
from nats_mcp.api.resources import RESOURCE_NOT_FOUND
from nats_mcp.api.server import ToolTable
from nats_mcp.api.tools.base import ERROR_META
from nats_mcp.bus.errors import BusError
from nats_mcp.coord.errors import CoordError
from nats_mcp.security.guard import RefusalCode

COMMAND = "python -m nats_mcp.api.contract > docs/tools.md"
PREFIX = "warp_"

ERROR_CODES: dict[str, str] = {
    "invalid_argument": "An argument is missing, of the wrong type or out of range; the message names it.",
    "invalid_name": "A handle, channel, capability, agent type, GUID or id does not have its format (see its pattern).",
    "invalid_cursor": "The cursor is not one this tool gave, or was made with other filters.",
    "not_registered": "The call needs a handle or a registration first (warp_handle_set, warp_registry_register).",
    "not_found": "The channel, agent, work item or DLQ item does not exist, or you may not see it.",
    "forbidden": "The policy does not allow this principal this call, or you do not own the item.",
    "limit_exceeded": "A size or count limit: nothing was written.",
    "rate_limited": "Too many calls: `retryAfterS` in the error says when a call would be admitted.",
    "conflict": "The item changed state first (already completed, claimed by another, ...).",
    "cancelled": "The work item was cancelled by its submitter or an admin: stop working on it.",
    "nats_unavailable": "NATS is unreachable right now; the same call can be retried.",
    "internal": "The server failed; it logged the cause. Not worth retrying as is.",
}
"""Every stable code a tool error may carry, with what it means (a test checks it against the error classes)."""

_GROUPS = (
    ("handle_", "Identity"),
    ("channels_", "Channels"),
    ("registry_", "Registry and presence"),
    ("messages_", "Direct messages"),
    ("work_", "Work distribution"),
    ("dlq_", "Dead-letter queue"),
    ("reservations_", "Reservations"),
)


def error_codes() -> set[str]:
    """The codes the error classes can produce: domain and bus errors, and the guard's refusals."""

    def codes(cls: type[Exception]) -> Iterator[str]:
        yield str(getattr(cls, "code", "internal"))
        for sub in cls.__subclasses__():
            yield from codes(sub)

    return {*codes(CoordError), *codes(BusError), *get_args(RefusalCode)}


# -- schema to text --------------------------------------------------------------------------------


def _code(value: Any) -> str:
    return f"`{json.dumps(value)}`" if not isinstance(value, str) else f'`"{value}"`'


def type_text(schema: dict[str, Any]) -> str:
    """One schema as a short phrase: its type and constraints (nested object fields are listed elsewhere)."""
    branches = schema.get("anyOf")
    if isinstance(branches, list):
        return " or ".join(type_text(b) for b in branches)
    kinds = schema.get("type")
    if isinstance(kinds, list) and len(kinds) == 2 and "null" in kinds:  # a nullable scalar (schema.typed_nullables)
        (kind,) = [k for k in kinds if k != "null"]
        alone = {**schema, "type": kind}
        if isinstance(schema.get("enum"), list):
            alone["enum"] = [v for v in schema["enum"] if v is not None]
        return type_text(alone) + " or null"
    if "const" in schema:
        return _code(schema["const"])
    if "enum" in schema:
        return " | ".join(_code(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind is None:
        return "any JSON value"
    if kind == "null":
        return "null"
    if kind == "array":
        items = schema.get("items", {})
        size = _range(schema.get("minItems"), schema.get("maxItems"), "items")
        return f"array of {type_text(items)}" + (f" ({size})" if size else "")
    if kind == "object":
        extra = schema.get("additionalProperties")
        if "properties" not in schema and isinstance(extra, dict) and extra:
            return f"object of {type_text(extra)} values"
        return "object"
    notes = []
    if kind == "string":
        if "pattern" in schema:
            notes.append(f"`{schema['pattern']}`")
        size = _range(schema.get("minLength"), schema.get("maxLength"), "chars")
        if size:
            notes.append(size)
    else:
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        bounds = _bounds(low, high, "exclusiveMinimum" in schema, "exclusiveMaximum" in schema)
        if bounds:
            notes.append(bounds)
    return str(kind) + (f", {', '.join(notes)}" if notes else "")


def _range(low: int | None, high: int | None, unit: str) -> str:
    if low is not None and high is not None:
        return f"{low}..{high} {unit}"
    if high is not None:
        return f"at most {high} {unit}"
    if low is not None:
        return f"at least {low} {unit}"
    return ""


def _bounds(low: Any, high: Any, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None and not low_open and not high_open:
        return f"{low}..{high}"
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '≥'} {low}")
    if high is not None:
        parts.append(f"{'<' if high_open else '≤'} {high}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _object_of(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema inside ``schema`` whose fields deserve their own lines (an object, a list or nullable)."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "object" and "properties" in branch:
            return dict(branch)
        items = branch.get("items")
        if branch.get("type") == "array" and isinstance(items, dict) and "properties" in items:
            return dict(items)
    return None


def input_table(schema: dict[str, Any]) -> list[str]:
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        return ["No arguments."]
    required = set(schema.get("required", ()))
    lines = ["| argument | type | required | description |", "|---|---|---|---|"]
    for name, prop in properties.items():
        default = prop.get("default")
        need = "yes" if name in required else "no" if default is None else f"no (default {_code(default)})"
        desc = prop.get("description", "")
        lines.append(f"| `{name}` | {_cell(type_text(prop))} | {need} | {_cell(desc)} |")
    return lines


def output_lines(schema: dict[str, Any], depth: int = 0) -> list[str]:
    lines = []
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        optional = "" if name in required else " (optional)"
        desc = f" — {prop['description']}" if prop.get("description") and depth == 0 else ""
        lines.append(f"{'  ' * depth}- `{name}`{optional}: {type_text(prop)}{desc}")
        nested = _object_of(prop)
        if nested is not None:
            lines.extend(output_lines(nested, depth + 1))
    return lines


def hints(tool: types.Tool) -> str:
    a = tool.annotations
    assert a is not None
    flags = [
        "read-only" if a.read_only_hint else "writes",
        "destructive" if a.destructive_hint else "not destructive",
        "idempotent" if a.idempotent_hint else "not idempotent",
        "open world" if a.open_world_hint else "closed world",
    ]
    return ", ".join(flags)


def tool_section(tool: types.Tool) -> list[str]:
    assert tool.output_schema is not None
    return [
        f"### `{tool.name}` — {tool.title}",
        "",
        tool.description or "",
        "",
        f"Annotations: {hints(tool)}.",
        "",
        *input_table(tool.input_schema),
        "",
        "Result (`structuredContent`):",
        "",
        *output_lines(tool.output_schema),
        "",
    ]


# -- prompts ---------------------------------------------------------------------------------------

COMPLETES: dict[Kind, str] = {
    "handle": "your current handle",
    "capability": "capabilities whose queue you may read (claim or broadcast grant) that a discoverable agent "
    "serves or your roles name; in a comma-separated list, its last item",
    "channel": "channels you may read",
    "agent_handle": "handles of the agents you can discover",
    "text": "—",
    "number": "—",
}


def prompt_section(spec: PromptSpec) -> list[str]:
    tools = ", ".join(f"`{PREFIX}{t}`" for t in spec.tools)
    return [
        f"### `{spec.name}` — {spec.title}",
        "",
        spec.description,
        "",
        f"Needs: {tools}.",
        "",
        "| argument | required | description | completions |",
        "|---|---|---|---|",
        *(
            f"| `{a.name}` | {'yes' if a.required else 'no'} | {_cell(a.description)} | {COMPLETES[a.kind]} |"
            for a in spec.args
        ),
        "",
    ]


def prompts_part() -> list[str]:
    out = [
        "## Prompts",
        "",
        "`prompts/get` answers one user message that walks the agent through these tools with their exact names "
        "and arguments (Claude Code offers the prompts as slash commands). A caller is listed, and may get or "
        "complete, only the prompts whose tools its policy lets it call, every one of them; a refused get or "
        "completion is `-32602` with `data.code` `forbidden`. Gets and completions pass the guard's limits and "
        "are audited (tool `prompts_get`, `completion_complete`; listing as `prompts_list`); a missing required "
        "argument is `-32602` with `invalid_argument`, an unknown prompt `not_found`.",
        "",
    ]
    for spec in PROMPTS:
        out += prompt_section(spec)
    out += [
        "## Completions and notifications",
        "",
        "`completion/complete` completes the `{channel}` of the resource template `nats-mcp://channels/{channel}` "
        "(channels you may read) and the prompt arguments above; values are prefix matches, case-insensitive.",
        "",
        "`notifications/message` (logger `nats-mcp`, `data.event` says what happened): on 2025-11-25 a connection "
        "that sent `logging/setLevel` hears, at that level and above, `nats_disconnected` (warning) and "
        "`nats_reconnected` (info); and `rate_limit_near` (warning) after a call that left under "
        f"{RATE_WARN_SHARE:.0%} of the principal's rate burst. On 2026-07-28 a request that sets "
        '`_meta["io.modelcontextprotocol/logLevel"]` gets `rate_limit_near` on its own stream; that revision has '
        "no connection-wide channel for the NATS events.",
        "",
        f"`notifications/progress`: a `{PREFIX}work_claim` or `{PREFIX}work_claim_batch` that waits (timeout above "
        f"0) and carries a `progressToken` reports about every {PROGRESS_INTERVAL_S:g} s: seconds waited of the "
        "timeout's, with the message `waiting for work on CAPABILITY`.",
        "",
        f"Waiting reads: `{PREFIX}channels_read` (with `afterSequence`) and `{PREFIX}messages_read_direct` take "
        "`waitMs` (0 to 60000): when nothing matches yet, the call answers as soon as a matching message is stored, "
        "else with an empty page at the deadline (no error). While it waits it holds one slot of the principal's "
        "share of `security.pools.read_waits` (default 2000 per process, 64 per principal; over it: "
        "`limit_exceeded`); `notifications/cancelled` ends it at once and gives the slot back. A server that starts "
        "refusing requests while draining answers its waiting reads at once, empty: ask again (another replica "
        f"serves it). Asking a teammate: `{PREFIX}messages_send_direct` returns the `threadId` it used (a new "
        "thread, named by the message's id, when none is given); the teammate answers with that `threadId` and "
        f"`inReplyTo`, and `{PREFIX}messages_read_direct` with `threadId` and `waitMs` waits for the answer, leaving "
        "other mail unread. `inReplyTo` is checked for its form only (the message it names has been consumed). "
        f"`{PREFIX}work_get` with `waitMs` (0 to 30000) waits for the item to end and holds a slot of the same share. "
        "A waiting read sends no progress notifications: keep `waitMs` under the client's request timeout (the "
        "TypeScript SDK's default is 60 s; see clients.md).",
        "",
    ]
    return out


# -- the page -------------------------------------------------------------------------------------


def render() -> str:
    """``docs/tools.md``: every tool under its default name, the error codes and the protocol errors."""
    table = ToolTable(PREFIX, ops=True)
    warp = [t for t in table.tools if t.name.startswith(PREFIX)]
    ops = [t for t in table.tools if not t.name.startswith(PREFIX)]
    out = [
        "# Tools",
        "",
        f"<!-- Generated from the tool definitions by `{COMMAND}`; do not edit by hand. -->",
        "",
        f"The tools {TITLE} serves, as `tools/list` describes them: {len(warp)} coordination tools (prefix "
        f"`{PREFIX}`, configurable with `tool_prefix`) and, when `nats_ops.enabled` is set, {len(ops)} NATS "
        "operations tools. A caller is listed only the tools its policy lets it call.",
        "",
        "Every successful call returns a Markdown text block and `structuredContent` matching the tool's "
        "`outputSchema` (the *Result* lists below). A failed call is a result with `isError: true` and no "
        f'`structuredContent`; its text reads `Error: [code] message` and `_meta["{ERROR_META}"]` holds '
        '`{"code", "message"}` (and `retryAfterS` for `rate_limited`).',
        "",
        "## Error codes",
        "",
        "| code | meaning |",
        "|---|---|",
        *(f"| `{code}` | {meaning} |" for code, meaning in ERROR_CODES.items()),
        "",
        "Protocol errors are JSON-RPC errors, not tool results: calling a tool that does not exist and passing "
        "`tools/list` a cursor (it has a single page) answer `-32602` (invalid params). Reading a resource that "
        f"does not exist answers `{RESOURCE_NOT_FOUND}` (resource not found) on protocol revisions up to 2025-11-25 "
        "and `-32602` from 2026-07-28, with the URI in `data.uri`.",
        "",
        "## Coordination tools",
        "",
    ]
    for head, title in _GROUPS:  # one level deeper than the nats_* tools: under their group
        out += [f"### {title}", ""]
        for tool in warp:
            if tool.name.removeprefix(PREFIX).startswith(head):
                out += ["#" + line if line.startswith("### ") else line for line in tool_section(tool)]
    out += prompts_part()
    out += [
        "## NATS operations tools",
        "",
        "Off unless `nats_ops.enabled` is set, under the fixed prefix `nats_`; each call also needs a policy "
        "role granting the tool and the streams, buckets or subjects it names (see "
        "[nats-ops-tools.md](nats-ops-tools.md)).",
        "",
    ]
    for tool in ops:
        out += tool_section(tool)
    return "\n".join(out).rstrip("\n") + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
