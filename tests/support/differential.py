"""Generated requests and the normalisation of their answers, shared by the differential tests of the own hot paths
(tests/integration/test_direct_calls.py on stdio, tests/e2e/test_http_direct.py over HTTP)."""

from __future__ import annotations

import re
from typing import Any

import mcp_types as types
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from nats_mcp.api.server import ToolTable
from tests.fuzz.schemas import valid

POLICY = """
version: 1
roles:
  agent:
    tools: ["*"]
    deny_tools: ["dlq_discard"]
    namespaces: ["*"]
    channels: {read: ["*"], send: ["roadmap", "parallel-work"]}
    capabilities: {broadcast: ["*"], claim: ["*"]}
    admin: [dlq, reservations]
    reservations: ["**"]
"""
TABLE = ToolTable("warp_")
SCHEMAS = {tool.name: tool.input_schema for tool in TABLE.tools}
WAITS = ("waitMs", "timeout")
"""Arguments that make a call wait: 0 in generated calls (the waiting calls are scripted below)."""
CAPABILITIES = ["diff", "idle", "late", "never"]
CLOSED = {"code": types.CONNECTION_CLOSED, "message": "Connection closed"}
ENVELOPE = {
    types.PROTOCOL_VERSION_META_KEY: "2026-07-28",
    types.CLIENT_CAPABILITIES_META_KEY: {},
    types.CLIENT_INFO_META_KEY: {"name": "differential", "version": "1.0"},
}

# What legitimately differs between the two sides (everything else must be equal):
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b[0-9a-f]{32}\b")
"""generated ids: work items, reservations, messages (UUIDs); agents' GUIDs (32 hex digits)."""
MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
"""timestamps (ISO 8601), in structured content and in the text rendering."""
AGE_COLUMN = ("oldest (s) |", re.compile(r"\| \d+(\.\d+)? \|$", re.M))
"""the age of a queue's oldest pending item (the last column of the queue status table), read off the clock."""
CLOCK_KEYS = {"oldestPendingSeconds"}
"""numbers read off the clock in structured content (the same age)."""
PROGRESS_VALUE = "progress"
"""a progress notification's ``progress`` is the time waited so far."""


def normalised(value: Any, namespace: str) -> Any:
    """``value`` with the legitimately differing parts replaced (the namespace too: each side has its own)."""
    if isinstance(value, dict):
        return {
            k: "<clock>" if k in CLOCK_KEYS or k == PROGRESS_VALUE else normalised(v, namespace)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [normalised(v, namespace) for v in value]
    if isinstance(value, str):
        text = value.replace(namespace, "<ns>")
        text = MOMENT.sub("<time>", UUID.sub("<uuid>", text))
        return AGE_COLUMN[1].sub("| <age> |", text) if AGE_COLUMN[0] in text else text
    return value


def examples(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """``count`` values of ``strategy``, the same on every run."""
    found: list[Any] = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: Any) -> None:
        found.append(value)

    collect()
    return found[:count]


def generated_calls() -> list[tuple[str, Any]]:
    """Per tool: two schema-valid argument sets, then one thing wrong of each kind."""
    calls: list[tuple[str, Any]] = []
    every_tool = st.fixed_dictionaries({name: valid(schema) for name, schema in SCHEMAS.items()})
    for generated in examples(every_tool, 2):  # one Hypothesis run for all the tools
        for name, args in generated.items():
            waits = {k: 0 for k in WAITS if k in SCHEMAS[name].get("properties", {})}
            calls.append((name, {**args, **waits}))
    for name, schema in SCHEMAS.items():
        props: dict[str, Any] = schema.get("properties", {})
        required = list(schema.get("required", []))
        if required:
            calls.append((name, {k: "x" for k in required[1:]}))  # the first required argument missing
        if props:
            key = sorted(props)[0]
            calls.append((name, {key: [1, {"deep": None}]}))  # a value of the wrong type
        calls.append((name, {"unknownArgument": True}))  # an argument the tool does not have
    return calls
