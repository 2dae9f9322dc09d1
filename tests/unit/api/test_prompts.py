"""The prompt catalogue against the tool definitions: every tool call a prompt shows names a real tool, its real
arguments, and a tool the prompt declares (the policy lists a prompt by those)."""

from __future__ import annotations

import re

import pytest

from nats_mcp.api.prompts import PROMPTS, PromptSpec
from nats_mcp.api.tools.coordination import TOOLS

ARGS = {spec.suffix: set(spec.args.model_fields) for spec in TOOLS}
CALL = re.compile(r"warp_(\w+) (\{[^{}]*\})")
FULL = {  # every argument given, and a list for the comma-separated one
    "join-team": {"handle": "alice", "agentType": "dev", "capabilities": "python, review", "channel": "roadmap"},
    "work-loop": {"capability": "python", "timeout": "1000"},
    "hand-off": {"task": "review PR 12", "to": "bob", "capability": "review"},
}


@pytest.mark.parametrize("spec", PROMPTS, ids=lambda s: s.name)
def test_every_call_a_prompt_shows_is_a_declared_tool_with_its_arguments(spec: PromptSpec) -> None:
    required = {a.name: "x" for a in spec.args if a.required}
    for given in (required, FULL[spec.name]):
        text = spec.render("warp_", given)
        calls = CALL.findall(text)
        assert calls, text
        for tool, body in calls:
            assert tool in spec.tools, f"{spec.name} shows warp_{tool} but does not declare it"
            assert set(re.findall(r'"(\w+)":', body)) <= ARGS[tool], (tool, body)
        assert "{{" not in text and "}}" not in text, text
    # and with every argument given, it shows every tool it declares (none is declared for nothing)
    assert {tool for tool, _ in CALL.findall(spec.render("warp_", FULL[spec.name]))} == set(spec.tools)


def test_a_comma_separated_list_becomes_a_json_list() -> None:
    join = next(s for s in PROMPTS if s.name == "join-team")
    assert '"capabilities": ["python", "review"]' in join.render("warp_", FULL["join-team"])
