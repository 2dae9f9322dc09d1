"""The dashboard's web boundary: login (API key or token -> session cookie), logout, the page and its JSON data.

Logging in authenticates exactly like the HTTP transport (:meth:`nats_mcp.security.identity.Resolver.resolve`:
address filter, lockout, audit of every refusal), then requires the policy's admin operation ``dashboard`` and the
namespace. The session cookie carries a random id only (``HttpOnly; SameSite=Strict; Path=<prefix>``,
``Secure`` over TLS); POSTs must come from an allowed Origin (and logout carries the session's CSRF token);
every request must name an allowed Host (DNS rebinding). Responses carry a strict Content-Security-Policy:
no inline script or style, nothing from another origin. The page polls the snapshot endpoint.

A session lasts no longer than its credential: the page and every data request re-check it (an API key's record
is read again, at most every :data:`RECHECK_S` seconds per session; a token's ``exp`` is compared), and a session
whose key was revoked or expired, or whose token expired, is dropped there and then.
"""

from __future__ import annotations

import json
import logging
import time
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.config.settings import Settings
from nats_mcp.dashboard.data import Dashboard
from nats_mcp.dashboard.sessions import COOKIE, Session, Sessions
from nats_mcp.security.audit.event import AuditEvent
from nats_mcp.security.authn import Provider
from nats_mcp.security.authn.apikeys import ApiKeys
from nats_mcp.security.authn.bearer import KEY_PREFIX, credentials_for
from nats_mcp.security.errors import AuthenticationError
from nats_mcp.security.guard import Guard
from nats_mcp.security.identity import Resolver
from nats_mcp.security.principal import Principal

log = logging.getLogger("nats_mcp.dashboard")

PREFIX = "/dashboard"
MAX_FORM_BYTES = 16 * 1024
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer made Chromium send "Origin: null" on the login POST
    "Cache-Control": "no-store",
}
LOGIN_MESSAGES = {
    "": "",
    "refused": "Login refused: the credential is not valid, or it does not grant the dashboard.",
    "busy": "Too many attempts from this address; wait a moment and try again.",
    "expired": "Your session ended; log in again.",
    "empty": f"Paste an API key ({KEY_PREFIX}…) or a bearer token.",
}
RECHECK_S = 1.0
"""How long a session's credential check is reused: bounds both the delay of a revocation and the KV reads."""
STATIC_TYPES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


def _static(name: str) -> str:
    return resources.files("nats_mcp.dashboard").joinpath("static", name).read_text(encoding="utf-8")


def _peer(request: Request) -> str | None:
    return request.client.host if request.client else None


class DashboardApp:
    """The routes of the dashboard under ``prefix``, over one :class:`Dashboard` and the security core."""

    def __init__(
        self,
        data: Dashboard,
        guard: Guard,
        provider: Provider,
        *,
        hosts: list[str],
        origins: list[str],
        secure: bool,
        transport: str = "http",
        prefix: str = PREFIX,
    ) -> None:
        self.data = data
        self.guard = guard
        self.provider = provider
        self.hosts = set(hosts)
        self.origins = set(origins)
        self.secure = secure
        self.transport = transport
        self.resolver = Resolver.from_settings(guard, data.settings, transport)
        self.prefix = prefix
        cfg = data.cfg
        self.sessions = Sessions(cfg.session_idle_s, cfg.session_max_s, cfg.max_sessions)
        self._pages = {name: _static(name).replace("{{prefix}}", prefix) for name in ("index.html", "login.html")}
        self._assets = {name: _static(name) for name in STATIC_TYPES}

    @classmethod
    def create(
        cls, conn: NatsConnection, settings: Settings, guard: Guard, provider: Provider, **options: Any
    ) -> DashboardApp:
        """The dashboard of the settings' namespace over ``conn`` (see :class:`DashboardApp` for ``options``)."""
        return cls(Dashboard(conn, settings), guard, provider, **options)

    def routes(self) -> list[BaseRoute]:
        p = self.prefix
        return [
            Route(p, self.page, methods=["GET"]),
            Route(p + "/", self.page, methods=["GET"]),
            Route(p + "/login", self.login_page, methods=["GET"]),
            Route(p + "/login", self.login, methods=["POST"]),
            Route(p + "/logout", self.logout, methods=["POST"]),
            Route(p + "/api/snapshot", self.snapshot, methods=["GET"]),
            Route(p + "/static/{name}", self.asset, methods=["GET"]),
        ]

    # -- plumbing --------------------------------------------------------------------------------

    def _respond(self, response: Response) -> Response:
        response.headers.update(HEADERS)
        return response

    def _host_ok(self, request: Request) -> bool:
        return request.headers.get("host", "") in self.hosts

    def _origin_ok(self, request: Request) -> bool:
        return request.headers.get("origin", "") in self.origins

    async def _live_session(self, request: Request) -> Session | Response | None:
        """The request's session if its credential still holds; None (and the session dropped) when it does not;
        a 503 when the credential cannot be checked now (the session is kept: an outage logs nobody out)."""
        session_id = request.cookies.get(COOKIE)
        session = self.sessions.get(session_id)
        if session is None:
            return None
        now = self.sessions.now()
        if now - session.checked < RECHECK_S:
            return session
        try:
            why = await self._credential_ended(session.principal)
        except Exception as exc:  # the key store unreachable: refuse this request, decide on the next
            log.warning(
                "dashboard: cannot re-check the credential of %s: %s", session.principal.display, type(exc).__name__
            )
            return self._refuse(503, "cannot check the session's credential now; try again")
        if why is not None:
            self.sessions.drop(session_id)
            self.guard.audit.record(
                AuditEvent(
                    "denied",
                    principal=session.principal,
                    transport=self.transport,
                    peer=_peer(request),
                    namespace=self.data.layout.namespace,
                    outcome="unauthenticated",
                    reason=f"dashboard_session_{why}",
                ),
            )
            log.info("dashboard session of %s ended: credential %s", session.principal.display, why)
            return None
        session.checked = now
        return session

    async def _credential_ended(self, principal: Principal) -> str | None:
        """Why the credential behind ``principal`` no longer holds (``revoked``, ``expired``), or None."""
        exp = principal.claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool) and exp <= time.time():
            return "expired"
        if principal.method != "apikey":
            return None
        keys: ApiKeys | None = getattr(self.provider, "apikeys", None)
        if keys is None or principal.key_id is None:
            return "revoked"  # an API-key session whose store is gone: nothing says the key still holds
        record = await keys.get(principal.key_id)
        if record is None:
            return "revoked"
        status = record.status()
        return None if status == "active" else status

    def _refuse(self, status: int, error: str) -> Response:
        return self._respond(JSONResponse({"error": error}, status_code=status))

    def _to_login(self, code: str = "") -> Response:
        return self._respond(RedirectResponse(f"{self.prefix}/login" + (f"?e={code}" if code else ""), 303))

    async def _form(self, request: Request) -> dict[str, str] | None:
        """The url-encoded form of a POST, or None when it is larger than a login form can be."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return None
        fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=10)
        return {k: v[0] for k, v in fields.items() if v}

    # -- pages -----------------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        if not self._host_ok(request):
            return self._refuse(421, "host not allowed")
        session = await self._live_session(request)
        if isinstance(session, Response):
            return session
        if session is None:
            return self._to_login()
        return self._respond(Response(self._pages["index.html"], media_type="text/html; charset=utf-8"))

    async def login_page(self, request: Request) -> Response:
        if not self._host_ok(request):
            return self._refuse(421, "host not allowed")
        message = LOGIN_MESSAGES.get(request.query_params.get("e", ""), "")  # fixed texts only: nothing reflected
        html = self._pages["login.html"].replace("{{message}}", message)
        return self._respond(Response(html, media_type="text/html; charset=utf-8"))

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self._assets or not self._host_ok(request):
            return self._refuse(404, "not found")
        return self._respond(Response(self._assets[name], media_type=STATIC_TYPES[name]))

    # -- login, logout ---------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if not self._host_ok(request):
            return self._refuse(421, "host not allowed")
        if not self._origin_ok(request):
            return self._refuse(403, "cross-origin request refused")
        form = await self._form(request)
        if form is None:
            return self._refuse(413, "form too large")
        credential = form.get("credential", "").strip()
        if not credential:
            return self._to_login("empty")
        peer = _peer(request)
        wait = self.guard.per_address.take(peer) if peer else 0.0
        if wait:
            self.guard.audit.record(
                AuditEvent(
                    "rate_limited",
                    principal=None,
                    transport=self.transport,
                    peer=peer,
                    outcome="rate_limited",
                    reason="dashboard_login",
                ),
            )
            return self._to_login("busy")
        try:
            principal = (await self.resolver.resolve(self.provider, credentials_for(credential, peer=peer))).principal
        except AuthenticationError as exc:
            return self._to_login("busy" if exc.reason == "locked_out" else "refused")  # audited by the guard
        policy = self.guard.policy
        if not (
            policy.admin_allowed(principal, "dashboard")
            and policy.namespace_allowed(principal, self.data.layout.namespace)
        ):
            self.guard.audit.record(
                AuditEvent(
                    "denied",
                    principal=principal,
                    transport=self.transport,
                    peer=peer,
                    namespace=self.data.layout.namespace,
                    outcome="forbidden",
                    reason="dashboard_not_allowed",
                ),
            )
            return self._to_login("refused")
        session_id, _ = self.sessions.create(principal)
        log.info("dashboard login: %s from %s", principal.display, peer)
        response = self._respond(RedirectResponse(self.prefix, 303))
        response.set_cookie(COOKIE, session_id, path=self.prefix, httponly=True, samesite="strict", secure=self.secure)
        return response

    async def logout(self, request: Request) -> Response:
        if not self._host_ok(request):
            return self._refuse(421, "host not allowed")
        if not self._origin_ok(request):
            return self._refuse(403, "cross-origin request refused")
        session_id = request.cookies.get(COOKIE)
        session = self.sessions.get(session_id)
        if session is not None:
            form = await self._form(request) or {}
            token = request.headers.get("x-csrf-token") or form.get("csrf", "")
            if token != session.csrf:
                return self._refuse(403, "missing or wrong CSRF token")
            self.sessions.drop(session_id)
        response = self._to_login()
        response.delete_cookie(COOKIE, path=self.prefix, httponly=True, samesite="strict", secure=self.secure)
        return response

    # -- data ------------------------------------------------------------------------------------

    async def snapshot(self, request: Request) -> Response:
        if not self._host_ok(request):
            return self._refuse(421, "host not allowed")
        session = await self._live_session(request)
        if isinstance(session, Response):
            return session
        if session is None:
            return self._refuse(401, "log in at " + self.prefix + "/login")
        data: dict[str, Any] = dict(await self.data.snapshot())
        data["session"] = {"principal": session.principal.display, "csrf": session.csrf}
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        return self._respond(Response(body, media_type="application/json"))
