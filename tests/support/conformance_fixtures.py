"""Test boundary: the MCP conformance suite's fixture tools, prompts and resources, served by ``nats_mcp.api.fixtures``.

Named by ``NATS_MCP_TEST_FIXTURES=tests.support.conformance_fixtures`` in tests/e2e/test_conformance_http.py only.
Each fixture does what the scenario of @modelcontextprotocol/conformance 0.1.16 that calls it expects (read from
the suite's scenario sources); the pauses between notifications are the behaviour those scenarios ask for.
"""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import warnings
import wave
import zlib
from collections.abc import Mapping
from typing import Any

import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

STEP_S = 0.05
"""The pause between a fixture's notifications the suite's scenarios describe (~50 ms)."""
_NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}


def _png_1x1_red() -> str:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    return base64.b64encode(raw + chunk(b"IEND", b"")).decode()


def _wav_silence() -> str:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 80)  # 10 ms
    return base64.b64encode(buffer.getvalue()).decode()


PNG = _png_1x1_red()
WAV = _wav_silence()


def _text(text: str, *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=error)


def _tool(name: str, description: str, schema: dict[str, Any] | None = None) -> types.Tool:
    return types.Tool(name=name, description=description, input_schema=schema or _NO_ARGS)


def _string_arg(name: str, description: str) -> dict[str, Any]:
    return {"type": "object", "properties": {name: {"type": "string", "description": description}}, "required": [name]}


SEP1034_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
}
SEP1330_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "oneOf": [{"const": "value1", "title": "First"}, {"const": "value2", "title": "Second"}],
        },
        "legacyEnum": {"type": "string", "enum": ["opt1", "opt2"], "enumNames": ["Option one", "Option two"]},
        "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
        "titledMulti": {
            "type": "array",
            "items": {"anyOf": [{"const": "value1", "title": "First"}, {"const": "value2", "title": "Second"}]},
        },
    },
}
JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}
"""The pending scenario json-schema-2020-12: these keywords must reach the client unchanged."""
USER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    },
    "required": ["username", "email"],
}


class ConformanceFixtures:
    """The fixtures (see ``nats_mcp.api.fixtures.Fixtures``)."""

    scheme = "test://"
    resource_tool = "test_resources"
    tools = (
        _tool("test_simple_text", "Returns a simple text."),
        _tool("test_image_content", "Returns a 1x1 PNG."),
        _tool("test_audio_content", "Returns a short WAV."),
        _tool("test_embedded_resource", "Returns an embedded text resource."),
        _tool("test_multiple_content_types", "Returns text, an image and a resource."),
        _tool("test_tool_with_logging", "Sends three info log notifications while it runs."),
        _tool("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100."),
        _tool("test_error_handling", "Always fails (isError)."),
        _tool("test_sampling", "Asks the client to sample an LLM.", _string_arg("prompt", "The prompt")),
        _tool("test_elicitation", "Asks the user for input.", _string_arg("message", "The message to show")),
        _tool("test_elicitation_sep1034_defaults", "Elicitation with defaults of every primitive type."),
        _tool("test_elicitation_sep1330_enums", "Elicitation with every enum variant."),
        _tool("json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features", JSON_SCHEMA_2020_12),
        _tool("test_reconnection", "Closes its SSE stream before answering; the client resumes with Last-Event-ID."),
    )
    prompts = (
        types.Prompt(name="test_simple_prompt", description="A prompt without arguments."),
        types.Prompt(
            name="test_prompt_with_arguments",
            description="A prompt with two arguments.",
            arguments=[
                types.PromptArgument(name="arg1", description="First argument", required=True),
                types.PromptArgument(name="arg2", description="Second argument", required=True),
            ],
        ),
        types.Prompt(
            name="test_prompt_with_embedded_resource",
            description="A prompt embedding a resource.",
            arguments=[types.PromptArgument(name="resourceUri", description="The resource's URI", required=True)],
        ),
        types.Prompt(name="test_prompt_with_image", description="A prompt with an image."),
    )
    resources = (
        types.Resource(uri="test://static-text", name="static-text", mime_type="text/plain"),
        types.Resource(uri="test://static-binary", name="static-binary", mime_type="image/png"),
        types.Resource(uri="test://watched-resource", name="watched-resource", mime_type="text/plain"),
    )
    templates = (
        types.ResourceTemplate(uri_template="test://template/{id}/data", name="template", mime_type="application/json"),
    )

    async def call_tool(
        self, ctx: ServerRequestContext[Any], name: str, arguments: Mapping[str, Any]
    ) -> types.CallToolResult:
        session: Any = ctx.session  # sampling, elicitation and logging are deprecated in 2026-07-28, not in 2025-11-25
        if name == "json_schema_2020_12_tool":
            return _text(f"Received: {dict(arguments)}")
        if name == "test_reconnection":  # the pending scenario server-sse-polling (SEP-1699)
            if ctx.close_sse_stream is not None:  # only with an event store to resume from
                await ctx.close_sse_stream()
            return _text("Reconnection test completed successfully")
        if name == "test_simple_text":
            return _text("This is a simple text response for testing.")
        if name == "test_image_content":
            return types.CallToolResult(content=[types.ImageContent(type="image", data=PNG, mime_type="image/png")])
        if name == "test_audio_content":
            return types.CallToolResult(content=[types.AudioContent(type="audio", data=WAV, mime_type="audio/wav")])
        if name == "test_embedded_resource":
            return types.CallToolResult(
                content=[_embedded("test://embedded-resource", "text/plain", "This is an embedded resource content.")]
            )
        if name == "test_multiple_content_types":
            return types.CallToolResult(
                content=[
                    types.TextContent(type="text", text="Multiple content types test:"),
                    types.ImageContent(type="image", data=PNG, mime_type="image/png"),
                    _embedded("test://mixed-content-resource", "application/json", '{"test":"data","value":123}'),
                ]
            )
        if name == "test_error_handling":
            return _text("This tool intentionally returns an error for testing", error=True)
        if name == "test_tool_with_logging":
            for i, message in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
                if i:
                    await asyncio.sleep(STEP_S)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", MCPDeprecationWarning)
                    await session.send_log_message(
                        "info", message, logger="conformance", related_request_id=ctx.request_id
                    )
            return _text("Logging test completed")
        if name == "test_tool_with_progress":
            for i, done in enumerate((0, 50, 100)):
                if i:
                    await asyncio.sleep(STEP_S)
                await ctx.session.report_progress(done, 100)
            return _text("Progress test completed")
        if name == "test_sampling":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                sampled = await session.create_message(
                    [
                        types.SamplingMessage(
                            role="user", content=types.TextContent(type="text", text=str(arguments["prompt"]))
                        )
                    ],
                    max_tokens=100,
                    related_request_id=ctx.request_id,
                )
            content = sampled.content
            return _text(f"LLM response: {content.text if isinstance(content, types.TextContent) else content}")
        if name in ("test_elicitation", "test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums"):
            message, schema = {
                "test_elicitation": (str(arguments.get("message", "")), USER_SCHEMA),
                "test_elicitation_sep1034_defaults": ("Test defaults: please accept", SEP1034_SCHEMA),
                "test_elicitation_sep1330_enums": ("Test enums: please choose", SEP1330_SCHEMA),
            }[name]
            answer = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
            return _text(f"User response: action={answer.action}, content={answer.content}")
        raise MCPError(types.INVALID_PARAMS, f"no fixture tool {name!r}")

    async def get_prompt(self, name: str, arguments: Mapping[str, str]) -> types.GetPromptResult:
        if name == "test_simple_prompt":
            content: types.TextContent | types.ImageContent | types.EmbeddedResource = types.TextContent(
                type="text", text="This is a simple prompt for testing."
            )
        elif name == "test_prompt_with_arguments":
            content = types.TextContent(
                type="text",
                text=f"Prompt with arguments: arg1='{arguments.get('arg1')}', arg2='{arguments.get('arg2')}'",
            )
        elif name == "test_prompt_with_embedded_resource":
            uri = arguments.get("resourceUri", "test://example-resource")
            content = _embedded(uri, "text/plain", "Embedded resource content for testing.")
        elif name == "test_prompt_with_image":
            content = types.ImageContent(type="image", data=PNG, mime_type="image/png")
        else:
            raise MCPError(types.INVALID_PARAMS, f"no fixture prompt {name!r}")
        return types.GetPromptResult(messages=[types.PromptMessage(role="user", content=content)])

    def complete(self, prompt: str, argument: str, value: str) -> list[str]:
        return [v for v in ("paris", "park", "party") if v.startswith(value)] if argument == "arg1" else []

    async def read_resource(self, uri: str) -> types.ReadResourceResult:
        contents: types.TextResourceContents | types.BlobResourceContents
        if uri == "test://static-text":
            contents = types.TextResourceContents(
                uri=uri, mime_type="text/plain", text="This is the content of the static text resource."
            )
        elif uri == "test://static-binary":
            contents = types.BlobResourceContents(uri=uri, mime_type="image/png", blob=PNG)
        elif uri == "test://watched-resource":
            contents = types.TextResourceContents(uri=uri, mime_type="text/plain", text="Watched resource content.")
        elif uri.startswith("test://template/") and uri.endswith("/data"):
            ident = uri.removeprefix("test://template/").removesuffix("/data")
            contents = types.TextResourceContents(
                uri=uri, mime_type="application/json", text=f'{{"id":"{ident}","templateTest":true}}'
            )
        else:
            raise MCPError(-32002, f"no fixture resource {uri!r}", {"uri": uri})
        return types.ReadResourceResult(contents=[contents])


def _embedded(uri: str, mime_type: str, text: str) -> types.EmbeddedResource:
    contents = types.TextResourceContents(uri=uri, mime_type=mime_type, text=text)
    return types.EmbeddedResource(type="resource", resource=contents)


FIXTURES = ConformanceFixtures()
