"""The core NATS tools: the server's own state, publishing to a subject, a request and its reply."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from nats_mcp.api.schema import SubjectName
from nats_mcp.api.tools.base import Args, OpsSpec, Out, Rendered
from nats_mcp.api.tools.nats_common import ENC, READ_HINTS, InEnc, NoArgs, PayloadEnc, show
from nats_mcp.coord.natsops.models import Payload
from nats_mcp.coord.natsops.service import NatsScope, OpsService, decode_payload
from nats_mcp.security.needs import NatsAccess

# ---- inputs -------------------------------------------------------------------------------------


class PublishArgs(Args):
    subject: SubjectName = Field(description="A literal subject (no wildcards).", max_length=1024)
    payload: str = Field(default="", description="The message body, in `encoding`.")
    encoding: InEnc = Field(default="utf-8", description="How payload is written: utf-8 text, base64 or hex.")
    headers: dict[str, str] | None = Field(default=None, description="NATS headers (at most 32).")


class RequestArgs(PublishArgs):
    timeoutMs: int = Field(default=2000, ge=1, le=60_000, description="How long to wait for the reply, in ms.")
    replyEncoding: PayloadEnc = Field(default="auto", description=ENC)


# ---- outputs ------------------------------------------------------------------------------------


class ServerInfoOut(Out):
    server: dict[str, Any]
    account: dict[str, Any] | None
    monitor: dict[str, Any] | None


class PublishOut(Out):
    subject: str
    bytes: int


class RequestOut(Out):
    subject: str
    replySubject: str
    headers: dict[str, str]
    payload: Payload


# ---- handlers -----------------------------------------------------------------------------------


async def server_info(ops: OpsService, _scope: NatsScope, _args: NoArgs) -> Rendered:
    info = await ops.server_info()
    out = ServerInfoOut(**info)
    s = out.server
    text = f"**{s.get('server_name', '?')}** nats-server {s.get('version', '?')}"
    text += f", cluster {s['cluster']}" if s.get("cluster") else ""
    text += f", JetStream {'on' if s.get('jetstream') else 'off'}"
    if out.account:
        a = out.account
        text += f"\n\nAccount: {a['streams']} streams, {a['consumers']} consumers, "
        text += f"{a['storage']} B file, {a['memory']} B memory"
    return out, text


async def publish(ops: OpsService, _scope: NatsScope, args: PublishArgs) -> Rendered:
    data = decode_payload(args.payload, args.encoding, ops.limits.max_publish_bytes)
    await ops.publish(args.subject, data, args.headers)
    return PublishOut(subject=args.subject, bytes=len(data)), f"Published {len(data)} bytes to `{args.subject}`."


async def request(ops: OpsService, _scope: NatsScope, args: RequestArgs) -> Rendered:
    data = decode_payload(args.payload, args.encoding, ops.limits.max_publish_bytes)
    reply, headers, payload = await ops.request(args.subject, data, args.headers, args.timeoutMs, args.replyEncoding)
    out = RequestOut(subject=args.subject, replySubject=reply, headers=headers, payload=payload)
    return out, f"Reply from `{args.subject}`:\n\n{show(payload)}"


# ---- the table ----------------------------------------------------------------------------------


SERVER_TOOLS: tuple[OpsSpec, ...] = (
    OpsSpec(
        "nats_server_info",
        "NATS server info",
        "The connected NATS server: version, cluster, JetStream on/off, the account's "
        "JetStream usage and limits, and monitoring figures if configured. Start here to check NATS health.",
        NoArgs,
        ServerInfoOut,
        server_info,
        **READ_HINTS,
        needs=(NatsAccess("server"),),
    ),
)


MESSAGE_TOOLS: tuple[OpsSpec, ...] = (
    OpsSpec(
        "nats_publish",
        "Publish message",
        "Publish one message to a subject (core NATS; a stream capturing the subject stores it). "
        "Fire and forget: use nats_request when you need an answer.",
        PublishArgs,
        PublishOut,
        publish,
        needs=(NatsAccess("write", subjects="subject"),),
    ),
    OpsSpec(
        "nats_request",
        "Request and reply",
        "Send a request to a service subject and wait (timeoutMs) for its first reply. "
        "not_found means no service listens there.",
        RequestArgs,
        RequestOut,
        request,
        needs=(NatsAccess("write", subjects="subject"),),
    ),
)
