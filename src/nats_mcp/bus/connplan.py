"""The connection plan boundary: NATS settings turned into nats-py connect options (servers, auth method, TLS),
checked before any attempt, and a failed attempt classified (unreachable, auth, tls, config) with a hint.
:mod:`nats_mcp.bus.connection` connects and supervises with a plan.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import nats.errors

from nats_mcp.bus.errors import NatsConfigError, NatsConnectError
from nats_mcp.config.settings import Settings
from nats_mcp.core.pins import pin_context, pin_error
from nats_mcp.core.redact import redact


@dataclass(frozen=True)
class ConnectPlan:
    """Everything needed to connect: servers without credentials, the auth method, TLS, and the options."""

    servers: list[str]
    method: str
    tls: bool
    options: dict[str, Any] = field(repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    embedded: bool = False

    def describe(self) -> str:
        return ", ".join(self.servers)

    def scrub(self, text: str) -> str:
        return redact(text, self.secrets)


def _tls_context(settings: Settings) -> ssl.SSLContext:
    tls = settings.nats.tls
    try:
        ctx = ssl.create_default_context(
            purpose=ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None
        )
        if tls.cert_file and tls.key_file:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise NatsConfigError(
            f"cannot load the TLS files for NATS ({exc})",
            "check nats.tls.ca_file / cert_file / key_file: they must be readable PEM files",
        ) from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if tls.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    # Every handshake made with this context, reconnects included, checks the pins before nats-py writes CONNECT.
    return pin_context(ctx, tls.pins, "nats.tls.pins")


def _readable(path: Path, what: str, setting: str) -> str:
    try:
        with path.expanduser().open("rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise NatsConfigError(f"cannot read the {what} {path}: {exc.strerror or exc}", f"check {setting}") from None
    return str(path.expanduser())


def plan_connection(
    settings: Settings, *, embedded_url: str | None = None, embedded_token: str | None = None
) -> ConnectPlan:
    """Turn settings (or the embedded server's url and token) into a :class:`ConnectPlan`; pure but for file checks."""
    nats_cfg = settings.nats
    urls = [embedded_url] if embedded_url else nats_cfg.servers
    if not urls:
        raise NatsConfigError("no NATS URL configured", "set nats.url (NATS_URL) or use the embedded server")
    servers: list[str] = []
    url_user: str | None = None
    url_password: str | None = None
    schemes: set[str] = set()
    for url in urls:
        parts = urlsplit(url)
        schemes.add(parts.scheme)
        if parts.username is not None:
            user = unquote(parts.username)
            password = unquote(parts.password) if parts.password is not None else None
            if url_user is not None and (user, password) != (url_user, url_password):
                raise NatsConfigError(
                    "the NATS URLs carry different credentials", "put the same credentials on every URL, or none"
                )
            url_user, url_password = user, password
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
        servers.append(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")))
    websocket = schemes & {"ws", "wss"}
    if websocket and schemes - {"ws", "wss"}:
        raise NatsConfigError("cannot mix WebSocket (ws://, wss://) and TCP (nats://, tls://) URLs", "use one kind")
    tls_wanted = bool(schemes & {"tls", "wss"}) or nats_cfg.tls.configured
    if "ws" in schemes and tls_wanted:
        raise NatsConfigError("TLS is configured but a URL is ws:// (plaintext)", "use wss:// for WebSocket over TLS")
    if tls_wanted and "nats" in schemes:
        # A TLS setting with a nats:// URL: upgrade is enforced; say tls:// to be explicit.
        servers = [("tls" + s[4:]) if s.startswith("nats://") else s for s in servers]

    options: dict[str, Any] = {
        "name": nats_cfg.client_name,
        "connect_timeout": nats_cfg.connect_timeout_s,
    }
    if nats_cfg.inbox_prefix:
        options["inbox_prefix"] = nats_cfg.inbox_prefix
    secrets: list[str] = []
    method = "none"
    if embedded_url:
        if embedded_token:
            options["token"] = embedded_token
            secrets.append(embedded_token)
        method = "embedded token"
    elif url_user is not None and url_password is not None:
        options.update(user=url_user, password=url_password)
        secrets.append(url_password)
        method = "user/password (URL)"
    elif url_user is not None and url_password is None and nats_cfg.password is not None:
        # Warp's "mixed" form: user in the URL, password from NATS_PASS.
        password = nats_cfg.password.get_secret_value()
        options.update(user=url_user, password=password)
        secrets.append(password)
        method = "user/password"
    elif url_user is not None:
        options["token"] = url_user
        secrets.append(url_user)
        method = "token (URL)"
    elif nats_cfg.creds_file is not None:
        options["user_credentials"] = _readable(nats_cfg.creds_file, "creds file", "nats.creds_file")
        method = "creds file (JWT)"
    elif nats_cfg.nkey_seed_file is not None:
        options["nkeys_seed"] = _readable(nats_cfg.nkey_seed_file, "NKey seed file", "nats.nkey_seed_file")
        method = "nkey"
    elif nats_cfg.token is not None:
        token = nats_cfg.token.get_secret_value()
        options["token"] = token
        secrets.append(token)
        method = "token"
    elif nats_cfg.user is not None:
        if nats_cfg.password is None:
            raise NatsConfigError(
                "nats.user is set without a password", "set NATS_PASS or NATS_MCP_NATS_PASSWORD(_FILE)"
            )
        password = nats_cfg.password.get_secret_value()
        options.update(user=nats_cfg.user, password=password)
        secrets.append(password)
        method = "user/password"
    if tls_wanted:
        options["tls"] = _tls_context(settings)
        if nats_cfg.tls.server_name:
            options["tls_hostname"] = nats_cfg.tls.server_name
        if nats_cfg.tls.handshake_first:
            options["tls_handshake_first"] = True
    return ConnectPlan(servers, method, tls_wanted, options, tuple(secrets), embedded=bool(embedded_url))


class TlsPolicyError(nats.errors.Error):
    """The server's TLS stance does not match ours; raised before any credential is sent."""


def classify(exc: BaseException, plan: ConnectPlan) -> NatsConnectError:
    """A connection failure as a clear, secret-free message naming the method and a hint."""
    servers = plan.describe()
    text = plan.scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    pinned = pin_error(exc)
    if pinned is not None:
        return NatsConnectError(
            f"{pinned.setting}: {servers} presented no pinned key (saw {', '.join(pinned.seen) or 'no certificate'}); "
            "refused before CONNECT.",
            "if the server's key was rotated on purpose, add its new pin to nats.tls.pins (`nats-mcp doctor` shows "
            "the pins it sees); otherwise this may not be your server",
            kind="tls",
            method=plan.method,
        )
    if isinstance(exc, TlsPolicyError):
        if "does not offer" in str(exc):
            return NatsConnectError(
                f"TLS is required (tls:// URL or TLS settings) but {servers} does not offer TLS; refusing to "
                "continue in plaintext.",
                "enable TLS on the server, or remove the TLS settings and use a nats:// URL",
                kind="tls",
                method=plan.method,
            )
        return NatsConnectError(
            f"{servers} requires TLS but the client is not configured for TLS.",
            "use a tls:// URL and set nats.tls.ca_file (NATS_MCP_NATS_TLS_CA_FILE) to the server's CA",
            kind="tls",
            method=plan.method,
        )
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return NatsConnectError(
            f"the TLS certificate of {servers} is not trusted ({exc.__class__.__name__}: "
            f"{plan.scrub(getattr(exc, 'verify_message', '') or str(exc))}).",
            "set nats.tls.ca_file to the CA that signed the server certificate, and nats.tls.server_name if "
            "the certificate names another host",
            kind="tls",
            method=plan.method,
        )
    if isinstance(exc, ssl.SSLError):
        return NatsConnectError(
            f"TLS handshake with {servers} failed: {text}.",
            "check the client certificate (nats.tls.cert_file/key_file), the minimum TLS version and the "
            "server's TLS settings",
            kind="tls",
            method=plan.method,
        )
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in str(exc).lower():
        what = plan.method if plan.method != "none" else "no credentials"
        return NatsConnectError(
            f"NATS at {servers} refused the {what} authentication (Authorization Violation).",
            _AUTH_HINTS.get(
                plan.method,
                "configure credentials: NATS_URL with user:pass, NATS_MCP_NATS_TOKEN, nkey_seed_file or creds_file",
            ),
            kind="auth",
            method=plan.method,
        )
    # A server that demands a client certificate cuts the handshake: reset or broken pipe, by timing.
    if isinstance(exc, ConnectionError) and not isinstance(exc, ConnectionRefusedError) and plan.tls:
        return NatsConnectError(
            f"{servers} closed the TLS connection during the handshake ({text}); it may require a client "
            "certificate this client did not present or did not trust.",
            "set nats.tls.cert_file and nats.tls.key_file to a certificate signed by the server's client CA",
            kind="tls",
            method=plan.method,
        )
    return NatsConnectError(
        f"cannot reach NATS at {servers} ({text}).",
        "start NATS (for the embedded server: `nats-mcp nats start`), check nats.url, or run `nats-mcp doctor`",
        kind="unreachable",
        method=plan.method,
    )


_AUTH_HINTS = {
    "user/password": "check NATS_USER / NATS_PASS (or NATS_MCP_NATS_PASSWORD_FILE)",
    "user/password (URL)": "check the user:password in NATS_URL",
    "token": "check NATS_MCP_NATS_TOKEN (or NATS_MCP_NATS_TOKEN_FILE)",
    "token (URL)": "check the token in NATS_URL",
    "nkey": "check that the seed in nats.nkey_seed_file belongs to a user the server knows",
    "creds file (JWT)": "check nats.creds_file: the JWT must be signed by an account the server trusts",
    "embedded token": "the embedded server's token file does not match: `nats-mcp nats stop` then start again",
}
