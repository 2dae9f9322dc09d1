"""`nats-mcp dashboard`: the admin dashboard served on its own (loopback by default), beside or without `serve`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from typing import TYPE_CHECKING, Annotated

import typer

from nats_mcp.cli.common import err, fail, load_policy, loopback_host, state

if TYPE_CHECKING:
    from nats_mcp.config.settings import Settings
    from nats_mcp.runtime import Runtime
    from nats_mcp.security.policy import Policy


async def _run(settings: Settings, policy: Policy) -> None:
    d, http = settings.dashboard, settings.http
    family = socket.AF_INET6 if ":" in d.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((d.host, d.port))
    except OSError as exc:
        fail(f"cannot listen on {d.host}:{d.port}: {exc.strerror}", code=1)
    port = int(sock.getsockname()[1])
    host = f"[{d.host}]" if ":" in d.host else d.host
    base = f"{'https' if http.tls else 'http'}://{host}:{port}"
    hosts = [f"{host}:{port}", *http.allowed_hosts]
    if loopback_host(d.host):
        hosts += [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"]
    origins = [*http.allowed_origins, *(f"{scheme}://{h}" for h in hosts for scheme in ("http", "https"))]
    from nats_mcp.runtime import Runtime

    # Neither coordinator nor observability: the dashboard reads NATS itself and audits its logins.
    async with Runtime(settings, policy, transport="http", observe=False, coordinate=False) as runtime:
        await _serve(runtime, sock, base, hosts, origins)


async def _serve(runtime: Runtime, sock: socket.socket, base: str, hosts: list[str], origins: list[str]) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    from nats_mcp.dashboard.app import DashboardApp
    from nats_mcp.security.authn.chain import Authenticator
    from nats_mcp.transports.http.app import QuietServer

    settings, conn, guard, http = runtime.settings, runtime.conn, runtime.guard, runtime.settings.http
    authenticator = None
    dashboard = None
    try:
        try:
            authenticator = Authenticator.from_settings(settings, conn, dev_audiences=[base + "/dashboard"])
        except ValueError as exc:
            fail(str(exc), code=2)
        dashboard = DashboardApp.create(
            conn, settings, guard, authenticator, hosts=hosts, origins=origins, secure=http.tls
        )

        async def home(_request: object) -> RedirectResponse:
            return RedirectResponse(dashboard.prefix if dashboard else "/", 303)

        app = Starlette(routes=[Route("/", home), *dashboard.routes()])
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            ssl_certfile=str(http.tls_cert_file) if http.tls_cert_file else None,
            ssl_keyfile=str(http.tls_key_file) if http.tls_key_file else None,
        )
        server = QuietServer(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.stop)
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="dashboard-server")
        listening = asyncio.create_task(server.listening.wait())
        await asyncio.wait([serving, listening], return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if server.listening.is_set():
            err.print(f"nats-mcp: dashboard (admins) at {base}{dashboard.prefix}", highlight=False)
        await serving
    finally:
        if dashboard is not None:
            await dashboard.data.aclose()
        if authenticator is not None:
            await authenticator.aclose()


def dashboard(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to bind (default dashboard.host: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default dashboard.port: 8767; 0 picks a free one).")] = None,
) -> None:
    """Serve the live admin dashboard (login with an admin's API key or token) over this deployment's NATS.

    The same page `serve --transport http` mounts at /dashboard. Off loopback it needs TLS (http.tls_cert_file and
    http.tls_key_file), since a session cookie would otherwise cross the network in clear."""
    from nats_mcp.observe.logging import setup_logging

    loaded = state(ctx).load(
        {"dashboard.host": host, "dashboard.port": port}, {"dashboard.host": "--host", "dashboard.port": "--port"}
    )
    settings = loaded.settings
    setup_logging(settings.logging)
    if not loopback_host(settings.dashboard.host) and not settings.http.tls:
        fail(
            f"the dashboard binds to {settings.dashboard.host} only with TLS: set http.tls_cert_file and "
            "http.tls_key_file, or keep the loopback default",
            code=2,
        )
    sec = settings.security
    if not (sec.jwt_issuers or sec.dev_tokens or sec.introspection.url or sec.api_keys):
        fail(
            "the dashboard needs a way to log in: security.api_keys, security.jwt_issuers or "
            "security.introspection.url",
            code=2,
        )
    policy = load_policy(sec.policy_file)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(settings, policy))
