"""Unit tests of the tool table: names, prefix, schemas that compile, truthful hints, the error shape."""

from __future__ import annotations

import jsonschema
import pytest

from nats_mcp.api.server import ToolTable, error_result
from nats_mcp.api.tools.base import ERROR_META, tool_error

READ_ONLY = {
    "handle_get",
    "channels_list",
    "channels_read",
    "channels_status",
    "registry_discover",
    "registry_get_info",
    "work_list",
    "work_queue_status",
    "work_get",
    "dlq_list",
    "reservations_list",
}
# Releasing deletes a reservation (anyone's, by force): destructive, as discarding a dead letter is.
DESTRUCTIVE = {
    "messages_read_direct",
    "dlq_discard",
    "work_cancel",
    "work_force_cancel",
    "reservations_release",
    "reservations_force_release",
}
SPEC_TOOLS = {
    "handle_set",
    "handle_get",
    "channels_list",
    "channels_send",
    "channels_read",
    "channels_status",
    "registry_register",
    "registry_discover",
    "registry_get_info",
    "registry_update_presence",
    "registry_deregister",
    "messages_send_direct",
    "messages_read_direct",
    "work_broadcast",
    "work_claim",
    "work_claim_batch",
    "work_progress",
    "work_complete",
    "work_fail",
    "work_list",
    "work_queue_status",
    "work_get",
    "work_cancel",
    "work_force_cancel",
    "dlq_list",
    "dlq_retry",
    "dlq_discard",
    "reservations_acquire",
    "reservations_renew",
    "reservations_release",
    "reservations_list",
    "reservations_force_release",
}


def test_the_spec_tools_with_descriptions_and_compiling_schemas() -> None:
    table = ToolTable("warp_")
    assert {t.name.removeprefix("warp_") for t in table.tools} == SPEC_TOOLS
    for tool in table.tools:
        assert tool.description and len(tool.description) > 20, tool.name
        for schema in (tool.input_schema, tool.output_schema):
            assert schema is not None
            jsonschema.Draft202012Validator.check_schema(schema)
            assert schema["type"] == "object"
        assert tool.input_schema.get("additionalProperties") is False, tool.name


def test_hints_are_truthful() -> None:
    for tool in ToolTable("warp_").tools:
        suffix = tool.name.removeprefix("warp_")
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is (suffix in READ_ONLY), tool.name
        assert tool.annotations.destructive_hint is (suffix in DESTRUCTIVE), tool.name


def test_prefix_renames_every_tool() -> None:
    names = {t.name for t in ToolTable("team_").tools}
    assert all(n.startswith("team_") for n in names)
    assert "team_channels_send" in names


def test_name_patterns_are_published_for_agents() -> None:
    table = {t.name: t for t in ToolTable("warp_").tools}
    props = table["warp_channels_send"].input_schema["properties"]
    assert props["channel"]["pattern"] == "^[a-z0-9][a-z0-9-]{0,62}$"


@pytest.mark.parametrize("code", ["invalid_name", "nats_unavailable"])
def test_error_result_shape(code: str) -> None:
    result = error_result(code, "it broke at nats://u:pw@h:1")
    assert result.is_error is True
    assert result.content[0].text == f"Error: [{code}] it broke at nats://u:***@h:1"  # type: ignore[union-attr]
    # no structuredContent: TypeScript-SDK clients check it against the tool's outputSchema even on errors
    assert result.structured_content is None
    assert result.meta == {ERROR_META: {"code": code, "message": "it broke at nats://u:***@h:1"}}
    dumped = result.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert "structuredContent" not in dumped and tool_error(dumped) == result.meta[ERROR_META]


def test_schemas_have_no_refs_left() -> None:
    import json

    for tool in ToolTable("warp_").tools:
        text = json.dumps([tool.input_schema, tool.output_schema])
        assert "$ref" not in text and "$defs" not in text, tool.name
