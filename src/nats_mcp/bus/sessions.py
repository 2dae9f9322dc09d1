"""The MCP-session boundary in NATS: each HTTP session's record in a KV bucket, and the announcements of its changes.

A session (``Mcp-Session-Id``, protocol 2025-11-25 and earlier) is a record under ``<owner>.<session id>`` of the
namespace's sessions bucket, whose age limit is the sessions' idle timeout: whatever the client's requests touch
keeps it, an idle one expires by itself. ``owner`` is a digest of the credential's identity that opened the session
(:func:`owner_digest`), so a lookup made with another credential finds nothing — the 404 the SDK answers to a
session id presented by someone else — and one principal's sessions are the keys under its digest (counted for
its cap without reading anyone else's). Changes that other processes must act on (the session ended; its log
level changed) are announced on ``nmcp.<ns>.sessctl.<session id>``, which every gateway process listens to.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.kv import KeyValue

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.directget import DirectGetError, api_prefix, last_per_subject
from nats_mcp.bus.layout import Layout
from nats_mcp.bus.setup import ensure_kv

log = logging.getLogger("nats_mcp.bus.sessions")

ANONYMOUS = "anonymous"
FLUSH_TIMEOUT_S = 5
MAX_UPDATE_TRIES = 8
"""Compare-and-set rounds before an update gives up (two processes changing one session at once)."""


def owner_digest(owner: Mapping[str, Any] | None) -> str:
    """32 hex characters naming the identity that opened a session (None: no authentication, insecure dev mode)."""
    text = ANONYMOUS if owner is None else json.dumps(dict(owner), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SessionRecord:
    """What a session is, for any process to serve its next request."""

    session: str
    owner: str
    """:func:`owner_digest` of the credential that opened it."""
    version: str
    """The negotiated protocol revision."""
    client: dict[str, Any] | None
    """The client's ``initialize`` params (capabilities, clientInfo) as sent; None if they did not validate."""
    level: str | None = None
    """The log level set with ``logging/setLevel`` (None: no log notifications)."""
    agents: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    """The agents the session acted as (their ``Caller`` fields), marked offline when the client ends it."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SessionRecord:
        raw = json.loads(data)
        return cls(
            session=str(raw["session"]),
            owner=str(raw["owner"]),
            version=str(raw["version"]),
            client=raw.get("client"),
            level=raw.get("level"),
            agents=tuple(raw.get("agents") or ()),
        )


Control = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Called with (session id, announcement) for each announcement of a session change."""


class SessionStore:
    """The namespace's session records; the bucket is opened (or made) on first use."""

    def __init__(self, conn: NatsConnection, layout: Layout, ttl_s: float) -> None:
        self.conn = conn
        self.layout = layout
        self.ttl_s = ttl_s
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await ensure_kv(
                self.conn.jetstream,
                self.layout.sessions_bucket,
                ttl=self.ttl_s,
                description="MCP sessions of the HTTP gateway",
                replicas=self.conn.replicas,
            )
        return self._kv

    async def open(self) -> None:
        """Open the bucket, making it if needed (``nats-mcp provision`` does, for a gateway that may only open it)."""
        await self._bucket()

    async def create(self, record: SessionRecord) -> None:
        kv = await self._bucket()
        await kv.put(self.layout.session_key(record.owner, record.session), record.to_json())

    async def get(self, owner: str, session: str) -> SessionRecord | None:
        """The record, or None: no such session for this owner (never made, ended, or idle past its TTL)."""
        kv = await self._bucket()
        try:
            entry = await kv.get(self.layout.session_key(owner, session))
        except nats.js.errors.KeyNotFoundError:  # also deleted and purged keys
            return None
        return SessionRecord.from_json(entry.value) if entry.value else None

    async def touch(self, record: SessionRecord) -> None:
        """Write the record again: its age starts over (the session was used)."""
        await self.create(record)

    async def update(self, owner: str, session: str, change: Callable[[SessionRecord], SessionRecord]) -> bool:
        """Apply ``change`` with compare-and-set; False if the session is gone."""
        kv = await self._bucket()
        key = self.layout.session_key(owner, session)
        for _ in range(MAX_UPDATE_TRIES):
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                return False
            if not entry.value or entry.revision is None:
                return False
            new = change(SessionRecord.from_json(entry.value))
            try:
                await kv.update(key, new.to_json(), last=entry.revision)
                return True
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
        raise RuntimeError(f"session {session} changed {MAX_UPDATE_TRIES} times while being updated")

    async def delete(self, owner: str, session: str) -> None:
        kv = await self._bucket()
        await kv.delete(self.layout.session_key(owner, session))

    async def of_owner(self, owner: str) -> list[SessionRecord]:
        """The live sessions of one owner (one round trip: the newest value of each of its keys)."""
        await self._bucket()
        stream = f"KV_{self.layout.sessions_bucket}"
        subject = f"$KV.{self.layout.sessions_bucket}.{owner}.*"
        prefix = api_prefix(self.conn.settings.nats.jetstream_domain)
        try:
            found = await last_per_subject(self.conn.client, stream, subject, prefix=prefix)
        except DirectGetError:  # 404: none
            return []
        return [SessionRecord.from_json(m.data) for m in found if m.data]  # a deleted key's marker has no data

    # -- announcements ---------------------------------------------------------------------------

    async def announce(self, session: str, what: Mapping[str, Any]) -> None:
        """Tell every process (sent at once: announcements are rare, and a client may act on the next process next)."""
        client = self.conn.client
        await client.publish(self.layout.session_control_subject(session), json.dumps(dict(what)).encode())
        await client.flush(timeout=FLUSH_TIMEOUT_S)

    async def listen(self, control: Control) -> Subscription:
        """Hear every session's announcements (until the subscription is unsubscribed)."""
        prefix = self.layout.session_control_subjects[:-1]

        async def on_msg(msg: Msg) -> None:
            try:
                what = json.loads(msg.data)
                if isinstance(what, dict):
                    await control(msg.subject[len(prefix) :], what)
            except Exception:  # one bad announcement must not end the subscription
                log.warning("session announcement on %s not handled", msg.subject, exc_info=True)

        return await self.conn.client.subscribe(self.layout.session_control_subjects, cb=on_msg)


def with_level(level: str | None) -> Callable[[SessionRecord], SessionRecord]:
    return lambda record: replace(record, level=level)


def with_agent(agent: dict[str, Any], limit: int) -> Callable[[SessionRecord], SessionRecord]:
    def change(record: SessionRecord) -> SessionRecord:
        if any(a.get("guid") == agent.get("guid") for a in record.agents) or len(record.agents) >= limit:
            return record
        return replace(record, agents=(*record.agents, agent))

    return change
