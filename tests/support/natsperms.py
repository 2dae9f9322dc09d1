"""NATS servers with per-user permissions and the connections of those users."""

from __future__ import annotations

import asyncio
import contextlib
import json
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.kvcache import Bucket
from nats_mcp.bus.layout import DIRECTORY_BUCKET, Layout
from nats_mcp.bus.natsperms import NatsPermissions, build_permissions
from nats_mcp.bus.setup import ensure_stream
from nats_mcp.config.settings import Settings
from nats_mcp.coord.channels import ChannelService
from nats_mcp.coord.inbox import InboxService
from nats_mcp.coord.work.service import WorkService
from nats_mcp.security.audit.store import audit_stream_config
from tests.support.env import settings_for
from tests.support.natsserver import LOOPBACK, NatsServer

NS = "team"


OTHER = "other"


A = "a1" * 16


B = "b2" * 16


C = "c3" * 16


D = "d4" * 16


REFUSAL_WAIT_S = 10.0
"""Upper bound for the server's refusal to arrive (it comes within milliseconds)."""


@dataclass(frozen=True)
class User:
    name: str
    password: str
    perms: NatsPermissions


USERS = {
    "admin": User("admin", "admin-pw", build_permissions("admin")),
    "agent-a": User("agent-a", "a-pw", build_permissions("agent", [NS], agent=A)),
    "agent-b": User("agent-b", "b-pw", build_permissions("agent", [NS], agent=B, isolate_inbox=False)),
    "agent-c": User("agent-c", "c-pw", build_permissions("agent", [NS], agent=C)),  # isolated: the default
    "agent-o": User("agent-o", "o-pw", build_permissions("agent", [OTHER], agent=D)),
    "gateway": User("gateway", "g-pw", build_permissions("gateway", [NS], dm_namespaces=[OTHER])),
    "fleet": User("fleet", "f-pw", build_permissions("fleet", [NS])),
}


class PermsNatsServer(NatsServer):
    """A JetStream server whose users' permissions are the generator's rendered blocks, pasted as an operator would."""

    def config_sections(self) -> list[str]:
        entries = []
        for user in USERS.values():
            block = textwrap.indent(user.perms.render(), "      ")
            entries.append(
                f"    {{\n      user: {json.dumps(user.name)}\n      password: {json.dumps(user.password)}\n"
                f"{block}    }}"
            )
        return ["authorization {\n  users = [\n" + "\n".join(entries) + "\n  ]\n}"]

    def url_for(self, name: str) -> str:
        user = USERS[name]
        return f"nats://{user.name}:{user.password}@{LOOPBACK}:{self.port}"

    def violations(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if "Violation" in line]


class PrefixedConnection(NatsConnection):
    """The supervised connection (its inbox prefix set through nats.inbox_prefix, as the permissions demand) with a
    record of every error the server sent after connecting (permissions violations among them)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.errors: list[str] = []

    async def _on_error(self, exc: Exception) -> None:
        self.errors.append(str(exc))
        await super()._on_error(exc)


def settings_of(tmp_path: Path, server: PermsNatsServer, user: str, namespace: str, **extra: str) -> Settings:
    """The settings an operator gives the process of ``user``: its inbox prefix, and isolated inbox reads when its
    permissions are isolated (the default for an agent with a GUID)."""
    perms = USERS[user].perms
    isolated = {"NATS_MCP_NATS_ISOLATE_INBOX": "true"} if perms.isolate_inbox else {}
    return settings_for(
        tmp_path / user,
        NATS_URL=server.url_for(user),
        NATS_MCP_NAMESPACE=namespace,
        NATS_MCP_NATS_INBOX_PREFIX=perms.inbox_prefix,
        **{**isolated, **extra},
    )


@contextlib.asynccontextmanager
async def connection(
    tmp_path: Path, server: PermsNatsServer, user: str, namespace: str
) -> AsyncIterator[PrefixedConnection]:
    conn = PrefixedConnection(settings_of(tmp_path, server, user, namespace))
    conn.start()
    try:
        assert await conn.wait_connected(10), conn.status()
        yield conn
    finally:
        await conn.close()


async def provision(tmp_path: Path, server: PermsNatsServer) -> None:
    """What an operator runs once with the admin user: every stream, bucket and consumer of both namespaces."""
    for namespace in (NS, OTHER):
        async with connection(tmp_path, server, "admin", namespace) as conn:
            settings, layout = conn.settings, Layout(namespace)
            await ChannelService(conn, settings, layout).ensure_streams()
            await WorkService(conn, settings, layout).ensure()
            await ensure_stream(conn.jetstream, InboxService(conn, settings).inbox_config(layout))
            for bucket in (
                layout.registry_bucket,
                layout.identity_bucket,
                DIRECTORY_BUCKET,
                layout.reservations_bucket,
                layout.fleet_bucket,
            ):
                await Bucket(conn, bucket).kv()
            await ensure_stream(conn.jetstream, audit_stream_config())  # as `nats-mcp provision` makes it
            assert conn.errors == []


class Raw:
    """A plain nats-py client of one user, collecting the errors the server sends it."""

    def __init__(self, nc: Client, errors: asyncio.Queue[str]) -> None:
        self.nc = nc
        self.errors = errors

    @classmethod
    @contextlib.asynccontextmanager
    async def of(cls, server: PermsNatsServer, user: str) -> AsyncIterator[Raw]:
        errors: asyncio.Queue[str] = asyncio.Queue()

        async def on_error(exc: Exception) -> None:
            errors.put_nowait(str(exc))

        nc = await nats.connect(
            server.url_for(user),
            inbox_prefix=USERS[user].perms.inbox_prefix,
            error_cb=on_error,
            allow_reconnect=False,
        )
        try:
            yield cls(nc, errors)
        finally:
            await nc.close()

    async def refusal(self, kind: str, subject: str) -> None:
        """Wait for the server's ``Permissions Violation for <kind> to "<subject>"`` (nats-py lowercases it)."""
        expected = f'nats: permissions violation for {kind} to "{subject.lower()}"'
        async with asyncio.timeout(REFUSAL_WAIT_S):
            while (got := await self.errors.get()) != expected:
                raise AssertionError(f"expected {expected!r}, the server sent {got!r}")

    async def refused_request(self, subject: str, body: Any = b"") -> None:
        """A request the server drops as a publish violation: no answer is ever sent, the refusal arrives instead."""
        reply = self.nc.new_inbox()
        sub = await self.nc.subscribe(reply)
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        await self.nc.publish(subject, payload, reply=reply)
        await self.refusal("publish", subject)
        await self.nc.flush()
        assert sub.pending_msgs == 0, f"{subject} was answered"
        await sub.unsubscribe()

    async def refused_subscription(self, subject: str) -> None:
        await self.nc.subscribe(subject)
        await self.refusal("subscription", subject)

    async def api(self, subject: str, body: Any) -> dict[str, Any]:
        reply = await self.nc.request(subject, json.dumps(body).encode(), timeout=5)
        answer: dict[str, Any] = json.loads(reply.data)
        return answer

    def assert_no_errors(self) -> None:
        assert self.errors.empty(), self.errors.get_nowait()
