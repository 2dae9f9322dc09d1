"""The roaming-session boundary: any gateway process serves any request of any MCP session, whose state is in NATS.

The SDK keeps a session (protocol 2025-11-25 and earlier: ``Mcp-Session-Id``) in the memory of the process that
opened it and answers 404 everywhere else. Here each session is also a record in NATS (:mod:`nats_mcp.bus.sessions`:
its owner, negotiated revision, client params, log level, the agents it acted as), written before the client learns
its id. A request naming a session this process does not hold finds the record under the requesting credential's
owner digest (another credential finds nothing: 404, as the SDK answers) and *restores* the session here: a
transport with the same id and a connection that is already initialized with the recorded revision and client
params, so the request is served as on the process that opened it. Each process's copy of a session is a cache:
it ends when idle (the SDK's idle timeout) and comes back on the next request; the record ends by its own idle TTL
(every request refreshes it, at most every quarter TTL), or when the client ends the session (``DELETE``): then
every process is told (``sessctl``) and drops its copy, and the agents the session acted as are marked offline.

Server-to-client messages reach the process that holds the client's stream through NATS: every SSE event a session
produces is published to its subject (:mod:`events`), and a process serving a session's GET stream forwards the
events other processes published there (a notification of a subscription taken on process B reaches the GET
stream held by process A). A ``Last-Event-ID`` resumption on another process replays the stream from NATS and, if
the request is still being answered elsewhere, follows it until its response (:mod:`events`).

Limits (see docs/deployment.md): a resource subscription is watched by the process that took it while that
process holds the session (a client whose session copy there ends subscribes again); server-to-client *requests*
(sampling, elicitation, roots: this server sends none) would reach only a stream on the process that sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskStatus
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, AuthorizationContext, authorization_context
from mcp.server.connection import Connection
from mcp.server.runner import serve_connection
from mcp.server.streamable_http import GET_STREAM_KEY, StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import RequestBodyLimitMiddleware
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.transport_context import TransportContext
from mcp_types import InitializeRequestParams
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from nats_mcp.bus.sessions import SessionRecord, SessionStore, owner_digest, with_agent, with_level
from nats_mcp.core.names import InvalidNameError, validate_guid
from nats_mcp.security.identity import Caller
from nats_mcp.transports.http.events import NatsEventStore, SessionEventStore
from nats_mcp.transports.http.plain import PlainAnswers
from nats_mcp.transports.http.session_calls import SessionHot
from nats_mcp.transports.http.sessions import (
    BODY_KEY,
    MAX_AGENTS_PER_SESSION,
    SESSION_HEADER,
    SessionAgents,
    caller_fields,
    enter_session,
    header,
)

log = logging.getLogger("nats_mcp.http")

END_TIMEOUT_S = 5
LevelRestorer = Callable[[Connection, str], None]


def requestor_of(scope: Scope) -> AuthorizationContext | None:
    """The identity the SDK binds a session to (None without authentication)."""
    user = scope.get("user")
    return authorization_context(user) if isinstance(user, AuthenticatedUser) else None


def owner_of(scope: Scope) -> str:
    """The owner digest of the request's credential: its sessions are the records under it."""
    return owner_digest(requestor_of(scope))


def record_of(session: str, owner: str, body: Any) -> SessionRecord:
    """The record of a session opened by ``body`` (its initialize request), negotiated as the SDK does."""
    params = body.get("params") if isinstance(body, dict) and body.get("method") == "initialize" else None
    requested = params.get("protocolVersion") if isinstance(params, dict) else None
    version = requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
    return SessionRecord(session, owner, str(version), params if isinstance(params, dict) else None)


class RoamingSessions:
    """Sessions in NATS for one process's session manager (installed over it by :meth:`install`)."""

    def __init__(
        self,
        store: SessionStore,
        manager: StreamableHTTPSessionManager,
        events: NatsEventStore | None,
        agents: SessionAgents | None,
    ) -> None:
        self.store = store
        self.manager = manager
        self.events = events
        self.agents = agents
        self.restore_level: LevelRestorer | None = None
        """Set by the MCP server: gives a restored connection its recorded log level."""
        self.hot: SessionHot | None = None
        """Set when api/direct.py answers the sessions' hot requests (session_calls.py)."""
        self.touch_every_s = store.ttl_s / 4
        self._touched: dict[str, float] = {}
        self._connections: dict[str, Connection] = {}
        self._owners: dict[str, str] = {}
        self._subscription: Any = None
        self._restoring: dict[tuple[str, str], asyncio.Future[None]] = {}
        if agents is not None:
            agents.recorder = self._record_agent

    def install(self) -> None:
        """Put this object between the SDK's body limit and its session handling; own the sessions' server tasks."""
        manager = self.manager
        inner = manager._handle_request
        manager.asgi_app = RequestBodyLimitMiddleware(self._wrap(inner), manager.max_request_body_size)
        manager._serve_opening_request = self._serve_opening  # type: ignore[method-assign, assignment]

    async def start(self) -> None:
        """Hear other processes' announcements (a session ended, a log level changed) from the first connection to
        NATS on (the client subscribes again by itself after a reconnect)."""
        conn = self.store.conn
        conn.add_listener(self._on_nats_event)
        if conn.connected:
            await self._subscribe()

    async def _on_nats_event(self, event: str, _data: dict[str, Any]) -> None:
        if event == "connected":
            await self._subscribe()

    async def _subscribe(self) -> None:
        if self._subscription is not None:
            return
        try:
            self._subscription = await self.store.listen(self._control)
        except Exception as exc:  # sessions ended elsewhere then end here by idle timeout
            log.warning("not listening to session announcements: %s", exc)

    async def stop(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    # -- requests ----------------------------------------------------------------------------------

    def _wrap(self, inner: Callable[[Scope, Receive, Send], Awaitable[None]]) -> Any:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            version = header(scope, b"mcp-protocol-version")
            if scope.get("type") != "http" or (version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS):
                await inner(scope, receive, send)  # 2026-07-28: no sessions
                return
            session = header(scope, SESSION_HEADER)
            if session is None:
                await inner(scope, receive, self._recording(scope, send) if scope.get("method") == "POST" else send)
                return
            try:
                validate_guid(session, "session id")
            except InvalidNameError:
                await inner(scope, receive, send)  # not an id we give: the SDK answers 404
                return
            enter_session(session)
            owner = owner_of(scope)
            if session not in self.manager._server_instances:
                await self._restore(session, owner, requestor_of(scope))
            else:
                await self._touch(session, owner)
            if scope.get("method") == "DELETE":
                await inner(scope, receive, self._ending(session, owner, send))
            elif scope.get("method") == "GET" and (store := self._event_store(session)) is not None:
                async with store.forwarding(self._local_get_stream(session)):
                    await inner(scope, receive, send)
            else:
                await inner(scope, receive, send)

        return handle

    def _recording(self, scope: Scope, send: Send) -> Send:
        """Write the record of the session an initialize opens before its id reaches the client."""

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and int(message["status"]) < 400:
                session = next((v for k, v in message.get("headers", ()) if k.lower() == SESSION_HEADER), None)
                if session is not None:
                    sid = session.decode("latin-1")
                    owner = owner_of(scope)
                    try:
                        await self.store.create(record_of(sid, owner, scope.get(BODY_KEY)))
                        self._touched[sid] = time.monotonic()
                        self._owners[sid] = owner
                    except Exception as exc:  # NATS away: the session is served here only
                        log.warning("MCP session %s not recorded in NATS (served by this process only): %s", sid, exc)
            await send(message)

        return watch

    async def _touch(self, session: str, owner: str) -> None:
        if self._owners.get(session) != owner:
            return  # another credential naming the session (the SDK answers it 404) must not hold its refresh back
        now = time.monotonic()
        if now - self._touched.get(session, 0.0) < self.touch_every_s:
            return
        self._touched[session] = now
        try:
            record = await self.store.get(owner, session)
            if record is not None:
                await self.store.touch(record)
        except Exception as exc:
            log.warning("MCP session %s not refreshed in NATS: %s", session, exc)

    def _ending(self, session: str, owner: str, send: Send) -> Send:
        """After the SDK answered a DELETE 2xx (the session's own credential ended it): end it everywhere."""

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= int(message["status"]) < 300:
                await self._end(session, owner)  # told everywhere before the client hears it ended
            await send(message)

        return watch

    async def _end(self, session: str, owner: str) -> None:
        record = None
        try:
            with anyio.fail_after(END_TIMEOUT_S):
                record = await self.store.get(owner, session)
                await self.store.delete(owner, session)
                await self.store.announce(session, {"event": "ended"})
        except Exception as exc:  # the record then ends by its TTL, the other copies by their idle timeout
            log.warning("end of MCP session %s not recorded in NATS: %s", session, exc)
        self._forget(session)
        if self.agents is not None:
            await self.agents.ended(session, record, self.store)

    def _forget(self, session: str) -> None:
        self._touched.pop(session, None)
        self._connections.pop(session, None)
        self._owners.pop(session, None)

    # -- announcements -----------------------------------------------------------------------------

    async def _control(self, session: str, what: dict[str, Any]) -> None:
        event = what.get("event")
        if event == "ended":
            transport = self.manager._server_instances.get(session)
            self._forget(session)
            if transport is not None:
                await self.manager._discard_session(session, transport)
        elif event == "level":
            connection = self._connections.get(session)
            level = what.get("level")
            if connection is not None and isinstance(level, str) and self.restore_level is not None:
                self.restore_level(connection, level)

    async def level_set(self, session: str, level: str) -> None:
        """A connection of this process set its log level: record it, tell the other processes holding the session."""
        owner = self._owners.get(session)
        if owner is None:
            return
        try:
            if await self.store.update(owner, session, with_level(level)):
                await self.store.announce(session, {"event": "level", "level": level})
        except Exception as exc:
            log.warning("log level of MCP session %s not recorded in NATS: %s", session, exc)

    async def _record_agent(self, session: str, caller: Caller) -> None:
        owner = self._owners.get(session)
        if owner is not None:
            await self.store.update(owner, session, with_agent(caller_fields(caller), MAX_AGENTS_PER_SESSION))

    # -- the sessions' server tasks ----------------------------------------------------------------

    async def _restore(self, session: str, owner: str, requestor: AuthorizationContext | None) -> None:
        """Serve here a session another process opened (nothing, and the SDK's 404, if there is no such record).

        The session is entered in the SDK's table only once its server task runs (a request handed to a transport
        not yet connected fails); requests of the session that arrive meanwhile wait for this restoration.
        """
        key = (owner, session)
        pending = self._restoring.get(key)
        if pending is not None:
            await asyncio.shield(pending)
            return
        done = asyncio.get_running_loop().create_future()
        self._restoring[key] = done
        try:
            await self._restore_now(session, owner, requestor)
        finally:
            del self._restoring[key]
            done.set_result(None)

    async def _restore_now(self, session: str, owner: str, requestor: AuthorizationContext | None) -> None:
        try:
            record = await self.store.get(owner, session)
        except Exception as exc:
            log.warning("MCP session %s could not be looked up in NATS: %s", session, exc)
            return
        manager = self.manager
        if record is None or session in manager._server_instances:
            return
        transport = self._transport(session)
        assert manager._task_group is not None
        await manager._task_group.start(self._run, transport, record)  # connected: it takes requests from here
        async with manager._session_creation_lock:
            manager._server_instances[session] = transport
            if requestor is not None:
                manager._session_owners[session] = requestor
        self._touched[session] = time.monotonic()
        self._owners[session] = owner

    def _transport(self, session: str) -> StreamableHTTPServerTransport:
        manager = self.manager
        return PlainAnswers(
            mcp_session_id=session,
            is_json_response_enabled=manager.json_response,
            event_store=self.events.bound(session) if self.events is not None else manager.event_store,
            security_settings=manager.security_settings,
            retry_interval=manager.retry_interval,
            idle_timeout=manager.session_idle_timeout,
        )

    async def _serve_opening(
        self, transport: StreamableHTTPServerTransport, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """The SDK's opening of a session (its request answered, the session dropped if that failed), with the
        session's server task run here so that its connection can be reached (log level changes)."""
        session = transport.mcp_session_id
        assert session is not None
        manager = self.manager
        status: int | None = None

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        established = False
        try:
            assert manager._task_group is not None
            await manager._task_group.start(self._run, transport, None)
            await transport.handle_request(scope, receive, watch)
            established = status is not None and status < 400
        finally:
            if not established:
                await manager._discard_session(session, transport)
                self._forget(session)

    async def _run(
        self,
        transport: StreamableHTTPServerTransport,
        record: SessionRecord | None,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """One session's server loop: a new one (``record`` None: it awaits the handshake) or a restored one."""
        session = transport.mcp_session_id
        assert session is not None
        manager = self.manager
        connection: Connection | None = None
        async with transport.connect() as (read_stream, write_stream):
            task_status.started()
            try:
                idle_scope = transport.idle_scope or anyio.CancelScope()
                with idle_scope:
                    dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
                        read_stream, write_stream, inline_methods=frozenset({"initialize"})
                    )
                    connection = Connection.for_loop(dispatcher, session_id=session)
                    if record is not None:
                        _restored(connection, record)
                        if record.level is not None and self.restore_level is not None:
                            self.restore_level(connection, record.level)
                    self._connections[session] = connection
                    if self.hot is not None and isinstance(transport, PlainAnswers):
                        transport.own = self.hot.calls(connection, manager._lifespan_state)
                    await serve_connection(
                        manager.app, dispatcher, connection=connection, lifespan_state=manager._lifespan_state
                    )
            except Exception:
                log.exception("MCP session %s crashed", session)
            finally:
                await manager._discard_session(session, transport)
                if self._connections.get(session) is connection:
                    self._connections.pop(session, None)
                if session not in manager._server_instances:  # this copy ended (idle): what it kept goes too
                    self._touched.pop(session, None)
                    self._owners.pop(session, None)

    def _event_store(self, session: str) -> SessionEventStore | None:
        transport = self.manager._server_instances.get(session)
        store = transport._event_store if transport is not None else None
        return store if isinstance(store, SessionEventStore) else None

    def _local_get_stream(self, session: str) -> Callable[[], Any]:
        def stream() -> Any:
            transport = self.manager._server_instances.get(session)
            if transport is None:
                return None
            pair = transport._request_streams.get(GET_STREAM_KEY)
            return pair[0] if pair is not None else None

        return stream


def _restored(connection: Connection, record: SessionRecord) -> None:
    """A connection as the handshake left it on the process that opened the session."""
    connection.protocol_version = record.version
    if record.client is not None:
        try:
            connection.client_params = InitializeRequestParams.model_validate(record.client, by_name=False)
        except ValidationError:  # the opening process kept it unvalidated too: its requests then fail alike
            log.debug("MCP session %s: recorded client params do not validate", connection.session_id)
    connection.initialized.set()
