"""Unit tests of the tool metadata clients show: titles, described inputs, clean schemas, formats that agree."""

from __future__ import annotations

import json
from collections.abc import Iterator
from re import _parser
from typing import Any, get_args

import jsonschema
import mcp_types as types
import pytest
from pydantic import BaseModel, ValidationError

from nats_mcp.api.schema import plain_optionals, without_titles
from nats_mcp.api.server import ToolTable, build_server
from nats_mcp.api.tools.channels import ChannelsReadOut
from nats_mcp.api.tools.coordination import TOOLS as TOOL_SPECS
from nats_mcp.api.tools.natsops import OPS_TOOLS
from nats_mcp.api.tools.registry import RegisterArgs

TOOLS = ToolTable("warp_", ops=True).tools
UNBOUNDED = 1 << 16
"""A pattern maximum at least this large is treated as unbounded (``+``, ``*``: sre reports MAXREPEAT)."""


def schemas() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for tool in TOOLS:
        assert tool.output_schema is not None
        yield tool.name, "input", tool.input_schema
        yield tool.name, "output", tool.output_schema


def subschemas(schema: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema inside ``schema`` (keyword positions only: a property's name is never taken for a keyword)."""
    if not isinstance(schema, dict):
        return
    yield where, schema
    for name, prop in schema.get("properties", {}).items():
        yield from subschemas(prop, f"{where}/properties/{name}")
    for key in ("items", "additionalProperties", "not"):
        yield from subschemas(schema.get(key), f"{where}/{key}")
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for i, branch in enumerate(schema.get(key, ())):
            yield from subschemas(branch, f"{where}/{key}/{i}")


def test_every_tool_has_a_human_title() -> None:
    assert len(TOOLS) == 52  # 32 warp_* and 20 nats_*
    titles = [tool.title for tool in TOOLS]
    for tool in TOOLS:
        assert tool.title and 3 <= len(tool.title) <= 30, tool.name
        assert tool.title[0].isupper() and "_" not in tool.title, (tool.name, tool.title)
    assert len(set(titles)) == len(titles)


def test_every_input_field_is_described() -> None:
    missing = [
        f"{tool.name}.{name}"
        for tool in TOOLS
        for name, prop in tool.input_schema["properties"].items()
        if not prop.get("description")
    ]
    assert missing == []


def test_no_generated_titles_anywhere() -> None:
    for tool, which, schema in schemas():
        titled = [where for where, sub in subschemas(schema) if "title" in sub]
        assert titled == [], (tool, which, titled)


def test_a_property_named_title_survives_the_cleaning() -> None:
    schema = {"title": "Thing", "type": "object", "properties": {"title": {"title": "Title", "type": "string"}}}
    assert without_titles(schema) == {"type": "object", "properties": {"title": {"type": "string"}}}


def test_optional_inputs_read_as_their_type_and_nullable_outputs_stay_nullable() -> None:
    table = {tool.name: tool for tool in TOOLS}
    cursor = table["warp_registry_discover"].input_schema["properties"]["cursor"]
    assert cursor == {"type": "string", "description": cursor["description"]}
    channel = table["warp_channels_status"].input_schema["properties"]["channel"]
    assert channel["type"] == "string" and channel["pattern"].startswith("^[a-z0-9]") and "anyOf" not in channel
    out = table["warp_registry_discover"].output_schema
    assert out is not None and out["properties"]["nextCursor"] == {"type": ["string", "null"]}  # one check, not two
    read = table["warp_channels_read"].output_schema
    assert read is not None
    scope = read["properties"]["messages"]["items"]["properties"]["scope"]
    assert scope["type"] == ["string", "null"] and scope["enum"] == ["private", "personal", "team", "public", None]
    validator = jsonschema.Draft202012Validator(read)
    page: dict[str, Any] = {"channel": "c", "messages": [], "nextCursor": None, "hasMore": False, "total": None}
    message = {"id": "i", "sequence": 1, "handle": "h", "senderGuid": "g", "message": "m", "timestamp": "t"}
    for scope_value in ("team", None):
        assert validator.is_valid({**page, "messages": [{**message, "scope": scope_value}]})
    assert not validator.is_valid({**page, "messages": [{**message, "scope": "everyone"}]})
    assert not validator.is_valid({**page, "total": "3"})
    # a required nullable input is left alone: null is then a value, not an omission
    schema = {"properties": {"x": {"anyOf": [{"type": "string"}, {"type": "null"}]}}, "required": ["x"]}
    assert plain_optionals(schema) == schema


def test_max_length_agrees_with_the_pattern() -> None:
    bounded = 0
    for tool, which, schema in schemas():
        for where, sub in subschemas(schema):
            if "pattern" not in sub:
                continue
            assert sub.get("type") == "string", (tool, which, where)
            longest = _parser.parse(sub["pattern"]).getwidth()[1]
            if longest >= UNBOUNDED:
                continue
            bounded += 1
            assert sub.get("maxLength") == longest, (tool, which, where, sub)
    assert bounded >= 20  # handles, channels, capabilities, GUIDs, ids: the check is not vacuous


def test_the_deprecated_visibility_is_accepted_but_not_advertised() -> None:
    register = {tool.name: tool for tool in TOOLS}["warp_registry_register"]
    assert set(register.input_schema["properties"]) == {"agentType", "capabilities", "scope"}
    assert register.input_schema["additionalProperties"] is False
    args = RegisterArgs.model_validate({"agentType": "dev", "visibility": "project-only"})
    assert args.visibility == "project-only"
    with pytest.raises(ValidationError, match="visibility"):
        RegisterArgs.model_validate({"agentType": "dev", "visibility": "everyone"})


def test_server_info_has_title_website_and_icon() -> None:
    server = build_server()
    assert server.title == "NATS MCP Server" and server.version
    assert server.website_url is not None and server.website_url.startswith("https://")
    assert server.icons is not None
    icon = server.icons[0]
    assert isinstance(icon, types.Icon) and icon.src.startswith("data:image/svg+xml;base64,")


def test_the_warp_tool_list_stays_small() -> None:
    """Every client puts the whole list in the model's context: clearer descriptions may not bloat it.

    40,853 characters before titles and field descriptions were added and generated titles removed; 34,362 after;
    38,363 with warp_work_get, warp_work_cancel and dependsOn (issue 23); 41,271 (before those) with the five
    reservation tools (terse descriptions, slim results: only the list shows whole records); 43,929 with both;
    44,725 with warp_work_force_cancel; 45,271 with work boundaries (issue 24: the broadcast argument, and the
    boundary in every reply showing an item).
    """
    warp = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in TOOLS if t.name.startswith("warp_")]
    assert len(warp) == 32
    assert len(json.dumps(warp)) <= 45_300


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _models_in(arg)


def test_output_objects_are_open_in_the_schema_and_closed_in_the_models() -> None:
    """Clients are not asked to check for unknown fields (costly, per list item); the server cannot emit one."""
    seen: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = [*(spec.out for spec in TOOL_SPECS), *(spec.out for spec in OPS_TOOLS)]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        assert model.model_config.get("extra") == "forbid", model.__name__
        for field in model.model_fields.values():
            todo.extend(_models_in(field.annotation))
    assert len(seen) > len(TOOLS)  # nested models (a channel message, a work item) were walked too
    for name, which, schema in schemas():
        for where, sub in subschemas(schema):
            if which == "output":
                assert sub.get("additionalProperties") is not False, (name, where)
    read = {tool.name: tool for tool in TOOLS}["warp_channels_read"].output_schema
    assert read is not None and read["properties"]["messages"]["items"]["required"]  # still says what each has
    page: dict[str, Any] = {"channel": "c", "messages": [], "nextCursor": None, "hasMore": False, "total": 0}
    ChannelsReadOut.model_validate(page)
    with pytest.raises(ValidationError):  # an output model refuses a field its schema does not describe
        ChannelsReadOut.model_validate({**page, "surprise": 1})
