"""Boundary of the HTTP session-presence middleware: which session ends let which agents leave (ASGI, in process)."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from nats_mcp.coord.context import Caller
from nats_mcp.transports.http.sessions import SessionAgents, SessionEnds

ALICE = Caller(guid="a" * 32, namespace="team", project_id="0123456789abcdef", owner="o1")
BOB = Caller(guid="b" * 32, namespace="team", project_id="0123456789abcdef", owner="o2")


class Gateway:
    """Stands for the SDK behind the middleware: a POST acts as the agent in ``x-as`` (binding it to the request's
    session, as gateway_caller does), a DELETE ends the session with the given status."""

    def __init__(self, agents: SessionAgents) -> None:
        self.agents = agents
        self.left: list[str] = []
        self.status = 200

    async def leave(self, caller: Caller) -> None:
        self.left.append(caller.guid)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        who = dict(scope["headers"]).get(b"x-as")
        if who is not None:
            self.agents.bind(ALICE if who == b"alice" else BOB, self.leave)
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def request(app: SessionEnds, method: str, session: str | None, who: str | None = None) -> None:
    headers = [(b"mcp-session-id", session.encode())] if session else []
    if who:
        headers.append((b"x-as", who.encode()))
    scope = {"type": "http", "method": method, "path": "/mcp", "headers": headers}

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: object) -> None:
        return None

    await app(scope, receive, send)  # type: ignore[arg-type]


async def test_a_session_ended_by_its_client_lets_its_agents_leave_unless_another_session_acts_as_them() -> None:
    agents = SessionAgents()
    gateway = Gateway(agents)
    app = SessionEnds(gateway, agents)
    await request(app, "POST", None, "alice")  # no session (2026-07-28): nothing to end later
    assert len(agents) == 0
    await request(app, "POST", "s1", "alice")
    await request(app, "POST", "s1", "bob")  # one session, two agent names
    await request(app, "POST", "s2", "alice")
    # A DELETE the SDK refused (another credential, an unknown id) ends nothing.
    gateway.status = 404
    await request(app, "DELETE", "s1")
    assert gateway.left == [] and len(agents) == 2
    # s1 ends: bob leaves; alice still acts in s2, so she stays.
    gateway.status = 200
    await request(app, "DELETE", "s1")
    assert gateway.left == [BOB.guid]
    await request(app, "DELETE", "s2")
    assert gateway.left == [BOB.guid, ALICE.guid] and len(agents) == 0
    await request(app, "DELETE", "s2")  # ended twice: once counts
    assert gateway.left == [BOB.guid, ALICE.guid]


async def test_the_sessions_remembered_are_bounded() -> None:
    agents = SessionAgents(max_sessions=2)
    gateway = Gateway(agents)
    app = SessionEnds(gateway, agents)
    for session, who in (("s1", "bob"), ("s2", "alice"), ("s3", "alice")):
        await request(app, "POST", session, who)
    assert len(agents) == 2
    await request(app, "DELETE", "s1")  # the least recently used, forgotten: bob goes stale by time instead
    assert gateway.left == []
