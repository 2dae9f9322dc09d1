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


def without_closed_objects(schema: Any) -> Any:
    """The schema without ``additionalProperties: false`` (keyword positions only; a schema-valued one stays).

    For output schemas: a client validating a result checks it for every object, every list item included, and in
    the Python SDK's jsonschema that was about a third of checking a 50-message channel page. It told a client
    nothing it can use: the server cannot emit a field its schema leaves out (every output model forbids extras,
    tests/unit/api/test_tool_schemas.py), and a reader of a result ignores fields it does not know.
    """
    if isinstance(schema, list):
        return [without_closed_objects(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "additionalProperties" and value is False:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            cleaned[key] = {name: without_closed_objects(sub) for name, sub in value.items()}
        elif key in _DATA:
            cleaned[key] = value
        else:
            cleaned[key] = without_closed_objects(value)
    return cleaned


_SCALARS = frozenset({"string", "integer", "number", "boolean"})


def typed_nullables(schema: Any) -> Any:
    """The schema with each nullable scalar ``anyOf [S, {type: null}]`` as S with ``type: [T, "null"]``.

    The same values are valid; a validator checks one type list instead of trying two branches and collecting the
    first one's errors (in the Python SDK's jsonschema, a nullable ``scope`` on every message of a channel page
    was a quarter of checking the page). An enum gains ``null`` so that null still passes it.
    """
    if isinstance(schema, list):
        return [typed_nullables(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    branches = schema.get("anyOf")
    if isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches:
        (other,) = [b for b in branches if b != {"type": "null"}]
        if isinstance(other, dict) and other.get("type") in _SCALARS and "anyOf" not in other:
            merged = {**other, **{k: v for k, v in schema.items() if k != "anyOf"}, "type": [other["type"], "null"]}
            if isinstance(other.get("enum"), list):
                merged["enum"] = [*other["enum"], None]
            return merged
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            cleaned[key] = {name: typed_nullables(sub) for name, sub in value.items()}
        elif key in _DATA:
            cleaned[key] = value
        else:
            cleaned[key] = typed_nullables(value)
    return cleaned


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A tool's ``outputSchema``: self-contained, no generated titles, nullable scalars as type lists
    (:func:`typed_nullables`), objects left open (:func:`without_closed_objects`)."""
    cleaned = without_titles(inline_refs(model.model_json_schema()))
    out: dict[str, Any] = typed_nullables(without_closed_objects(cleaned))
    return out
