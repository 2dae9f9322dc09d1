"""The JSON-schema boundary: how a tool's pydantic models become the input and output schemas clients see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from nats_mcp.core.names import GUID_PATTERN, NAME_PATTERN, PROJECT_ID_PATTERN, TYPE_NAME_PATTERN, UUID_PATTERN
from nats_mcp.security.needs import Touches


@dataclass(frozen=True)
class Token:
    """A token's published format: its pattern and the longest string the pattern allows, side by side.

    Only published: the domain enforces both (``invalid_name``), so a bad token gets the contract's code, not
    pydantic's. ``tests/unit/api/test_tool_schemas.py`` checks every maxLength against its pattern's own maximum.
    """

    pattern: str
    max_length: int

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(pattern=self.pattern, maxLength=self.max_length)
        return schema


NameStr = Annotated[str, Token(NAME_PATTERN, 63)]
"""handle, channel."""
TypeStr = Annotated[str, Token(TYPE_NAME_PATTERN, 63)]
"""capability, agentType, messageType."""
GuidStr = Annotated[str, Token(GUID_PATTERN, 32)]
"""An agent GUID."""
UuidStr = Annotated[str, Token(UUID_PATTERN, 36)]
"""A message, work item or DLQ item id."""
ProjectIdStr = Annotated[str, Token(PROJECT_ID_PATTERN, 16)]
"""A project id (as Warp derives it)."""

# Arguments naming a resource the policy guards: a tool with one must declare a need naming it (security/needs.py),
# else it cannot be registered. The mark changes no schema.
ChannelName = Annotated[NameStr, Touches("channel")]
"""A channel (a ChannelSend or ChannelRead need)."""
CapabilityName = Annotated[TypeStr, Touches("capability")]
"""A capability whose work queue the call uses (a CapabilityUse or CapabilityRead need)."""
StreamName = Annotated[str, Touches("stream")]
"""A JetStream stream (a NatsAccess need's ``streams``)."""
BucketName = Annotated[str, Touches("bucket")]
"""A KV bucket (a NatsAccess need's ``buckets``)."""
SubjectName = Annotated[str, Touches("subject")]
"""A NATS subject (a NatsAccess need's ``subjects``)."""

# Keywords whose value maps names to schemas (the names are data, never keywords to clean).
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# Keywords whose value is data, not a schema.
_DATA = frozenset({"default", "const", "enum", "examples", "required"})


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every local ``$ref`` replaced by its definition (ours are never recursive).

    Clients validate each result against the output schema; resolving a ``$ref`` per list item made
    that the largest cost of reading a channel page on the client side, and some clients do not
    resolve ``$ref`` at all.
    """
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                merged = {
                    **walk(defs[ref.removeprefix("#/$defs/")]),
                    **{k: walk(v) for k, v in node.items() if k != "$ref"},
                }
                return merged
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result


def without_titles(schema: Any) -> Any:
    """The schema without the ``title`` keywords pydantic derives from class and field names ("Agenttype").

    A property *named* ``title`` stays: only keyword positions are cleaned.
    """
    if isinstance(schema, list):
        return [without_titles(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            cleaned[key] = {name: without_titles(sub) for name, sub in value.items()}
        elif key in _DATA:
            cleaned[key] = value
        else:
            cleaned[key] = without_titles(value)
    return cleaned


def plain_optionals(schema: dict[str, Any]) -> dict[str, Any]:
    """An input schema whose optional properties read as their type, not ``anyOf [T, null]`` with ``default: null``.

    An argument left out and one given as null mean the same to every tool, so the schema says "optional" the
    way Warp's did (absent from ``required``); the server still accepts null.
    """
    required = set(schema.get("required", ()))
    properties: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        branches = prop.get("anyOf")
        if name not in required and prop.get("default", ...) is None and isinstance(branches, list):
            rest = [b for b in branches if b != {"type": "null"}]
            if len(rest) == 1 and len(branches) == 2:
                prop = {**rest[0], **{k: v for k, v in prop.items() if k not in ("anyOf", "default")}}
        properties[name] = prop
    return {**schema, "properties": properties}


def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A tool's ``inputSchema``: self-contained, no generated titles, optional arguments as plain types."""
    cleaned: dict[str, Any] = without_titles(inline_refs(model.model_json_schema()))
    return plain_optionals(cleaned)


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A tool's ``outputSchema``: self-contained, no generated titles (nullable fields stay nullable)."""
    cleaned: dict[str, Any] = without_titles(inline_refs(model.model_json_schema()))
    return cleaned
