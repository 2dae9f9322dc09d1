"""Boundary of the typed gRPC adapter as Google's clients meet it: ``model_context_protocol.Mcp`` ListTools and
CallTool over mTLS against a real serve process and nats-server, with the same policy, refusals and audit."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from mcp_grpc_transport_proto import mcp_messages_pb2 as pb
from mcp_grpc_transport_proto import mcp_pb2_grpc

from nats_mcp.transports.grpc.client import open_channel
from tests.support.audit import audit_records
from tests.support.grpc_server import Pki, policy_file, serving, target
from tests.support.natsserver import NatsServer, wait_for
from tests.support.stdio import TOOLS


def call(name: str, **arguments: object) -> pb.CallToolRequest:
    request = pb.CallToolRequest.Request(name=name)
    request.arguments.update(arguments)
    return pb.CallToolRequest(request=request)


def structured(response: pb.CallToolResponse) -> dict[str, object]:
    found: dict[str, object] = json_format.MessageToDict(response.structured_content)
    return found


async def services(channel: grpc.aio.Channel) -> set[str] | grpc.StatusCode:
    """The services reflection lists, or the status the reflection call ended with."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    stream = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    try:
        async for answer in stream:
            return {s.name for s in answer.list_services_response.service}
    except grpc.aio.AioRpcError as error:
        return error.code()
    return set()


async def test_typed_list_tools_and_call_tool_share_the_policy_and_the_audit(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    pki = Pki.create(tmp_path / "pki")
    alice, bob = pki.client("alice"), pki.client("bob")
    stranger = pki.issue("stranger", uris=["spiffe://elsewhere.test/agent/stranger"])
    trail = tmp_path / "audit.jsonl"
    env = {
        "NATS_MCP_NAMESPACE": "team-typed",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_SECURITY_AUDIT_FILE": str(trail),
        "NATS_MCP_GRPC_REFLECTION": "true",
    }
    async with serving(tmp_path, "typed", nats_server.url, pki.server(), "--client-ca", str(pki.ca_file), **env) as srv:
        a_channel, b_channel = open_channel(target(srv, alice)), open_channel(target(srv, bob))
        try:
            a, b = mcp_pb2_grpc.McpStub(a_channel), mcp_pb2_grpc.McpStub(b_channel)
            listed = await a.ListTools(pb.ListToolsRequest())
            assert {t.name for t in listed.tools} == TOOLS
            discard = next(t for t in listed.tools if t.name == "warp_dlq_discard")
            assert discard.annotations.destructive_hint and discard.input_schema.fields["properties"]

            # the coordination path, typed: handles, a channel message, the server-written sender
            assert not (await a.CallTool(call("warp_handle_set", handle="alice"))).is_error
            sent = await a.CallTool(call("warp_channels_send", channel="roadmap", message="typed hello"))
            assert not sent.is_error and sent.content[0].text.text
            page = structured(await b.CallTool(call("warp_channels_read", channel="roadmap")))
            messages = page["messages"]
            assert isinstance(messages, list) and [(m["message"], m["handle"]) for m in messages] == [
                ("typed hello", "alice")
            ]

            # a tool error is a response with is_error, no structured content, and the code in the metadata
            bad = await a.CallTool(call("warp_channels_read", channel="no such channel!"))
            assert bad.is_error and bad.content[0].text.text.startswith("Error: [invalid_name] ")
            assert not bad.HasField("structured_content")
            meta = json_format.MessageToDict(bad.common.metadata)
            assert meta["io.nats-mcp/error"]["code"] == "invalid_name", meta

            # the tool-name metadata must agree with the request
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await a.CallTool(call("warp_handle_get"), metadata=(("mcp-tool-name", "warp_dlq_discard"),))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert not (await a.CallTool(call("warp_handle_get"), metadata=(("mcp_tool", "warp_handle_get"),))).is_error

            # what the adapter does not serve says so
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await a.ListResources(pb.ListResourcesRequest())
            assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED

            # reflection was enabled for this server: it lists the tunnel, the typed service and health
            found = await services(a_channel)
            assert isinstance(found, set)
            assert {"nats_mcp.v1.McpTransport", "model_context_protocol.Mcp", "grpc.health.v1.Health"} <= found
        finally:
            await a_channel.close()
            await b_channel.close()

        # a certificate of our CA whose identity the policy does not know: PERMISSION_DENIED; no certificate: no call
        for leaf, status in ((stranger, grpc.StatusCode.PERMISSION_DENIED), (None, grpc.StatusCode.UNAVAILABLE)):
            channel = open_channel(target(srv, leaf))
            try:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await mcp_pb2_grpc.McpStub(channel).ListTools(pb.ListToolsRequest())
                assert info.value.code() == status
            finally:
                await channel.close()
        await wait_for(lambda: '"channels_read"' in trail.read_text(), 15, message="the typed calls were not audited")

    records = audit_records(trail)
    calls = [(r["tool"], r["outcome"]) for r in records if r["kind"] == "tool_call"]
    assert ("channels_send", "ok") in calls and ("handle_set", "ok") in calls
    assert all(r["transport"] == "grpc" for r in records)
    reasons = {r["reason"] for r in records if r["kind"] != "tool_call"}
    assert {"header_mismatch", "agent_denied"} <= reasons, reasons


async def test_reflection_is_off_by_default(tmp_path: Path, nats_server: NatsServer) -> None:
    pki = Pki.create(tmp_path / "pki")
    alice = pki.client("alice")
    env = {
        "NATS_MCP_NAMESPACE": "team-noreflect",
        "NATS_MCP_SECURITY_POLICY_FILE": policy_file(tmp_path),
        "NATS_MCP_GRPC_TYPED_SERVICE": "false",
    }
    async with serving(tmp_path, "plain", nats_server.url, pki.server(), "--client-ca", str(pki.ca_file), **env) as srv:
        channel = open_channel(target(srv, alice))
        try:
            # Asked with no request written: a write racing the server's UNIMPLEMENTED makes grpc-python's client
            # report INTERNAL now and then ("Internal error from Core"; a clean CI run saw it).
            stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter(()))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _answer in stream:
                    pass
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
            with pytest.raises(grpc.aio.AioRpcError) as off:  # and the typed service was turned off
                await mcp_pb2_grpc.McpStub(channel).ListTools(pb.ListToolsRequest())
            assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            await channel.close()
