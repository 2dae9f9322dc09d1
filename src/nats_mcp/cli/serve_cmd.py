"""`nats-mcp serve`: run the MCP server on a transport, with NATS supervised in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nats_mcp.cli.common import CliState, err, fail, load_policy, loopback_host, out, state

if TYPE_CHECKING:
    from nats_mcp.cli.stdio_start import Startup
    from nats_mcp.config.settings import Settings
    from nats_mcp.runtime import Runtime
    from nats_mcp.security.audit.record import Transport
    from nats_mcp.security.policy import Policy

log = logging.getLogger("nats_mcp.serve")

AUDIT_DRAIN_OFFLINE_S = 0.25
"""At a stdio shutdown with NATS unreachable, how long queued audit records may take to reach their sinks: long
enough for the file sink, not a wait for NATS to come back (the client has gone)."""
HTTP_LINGER_S = 2
"""After the HTTP drain (transports/http/drain.py), how long uvicorn waits for connections still open before it
cancels their requests: the streams the drain ended close at once; only requests past the drain deadline remain."""


async def _serve(settings: Settings, policy: Policy, startup: Startup | None = None) -> None:
    # Imported here: the SDK costs ~0.75 s to import, which no other command should pay.
    from nats_mcp.api.server import build_server, local_security
    from nats_mcp.transports.stdio import serve_stdio

    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        if main is not None:
            loop.add_signal_handler(sig, main.cancel)  # clean shutdown: the runtime closes
    runtime = _runtime(settings, policy, transport="stdio", local_agent=True, offline_drain_s=AUDIT_DRAIN_OFFLINE_S)
    # MCP is answered at once; NATS connects (or keeps retrying) beside it.
    async with runtime:
        try:
            await _start_observing(runtime)
            coordinator = runtime.coordinator
            security = local_security(runtime.guard, settings.security, coordinator.layout.namespace)
            server = build_server(coordinator, coordinator.local_caller, settings.tool_prefix, security)
            if startup is None:
                await serve_stdio(server)
            else:  # the console script's fast path: where the front left the session, or record the entry
                from nats_mcp.cli.stdio_start import serve_session

                await serve_session(server, startup)
        except asyncio.CancelledError:
            log.info("shutting down on a signal")


async def _serve_http(
    settings: Settings, policy: Policy, *, insecure: bool, quickstart: bool, rotate_key: bool = False
) -> None:
    import socket

    import uvicorn

    from nats_mcp.api.server import Security, build_server
    from nats_mcp.security.authn.apikeys import ApiKeys
    from nats_mcp.security.authn.chain import Authenticator
    from nats_mcp.transports.http import app as web
    from nats_mcp.transports.http import drain as drainage

    http = settings.http
    family = socket.AF_INET6 if ":" in http.host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets created with it, and without it Nagle's
    # algorithm held every response body ~40 ms for the client's delayed ACK (bench/http_tools.py: 20 -> 137 calls/s).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((http.host, http.port))
    except OSError as exc:
        fail(f"cannot listen on {http.host}:{http.port}: {exc.strerror}", code=1)
    port = int(sock.getsockname()[1])
    url = web.resource_url(settings, port)
    runtime = _runtime(settings, policy, transport="http")
    async with runtime:
        conn, guard, coordinator, obs = runtime.conn, runtime.guard, runtime.coordinator, runtime.obs
        authenticator = None
        dashboard = None
        try:
            await _start_observing(runtime)
            if insecure:
                source: web.PrincipalSource = web.InsecureDev(guard, settings)
                verifier = None
            else:
                try:
                    authenticator = Authenticator.from_settings(settings, conn, dev_audiences=[url])
                except ValueError as exc:
                    fail(str(exc), code=2)
                verifier = web.GatewayVerifier(guard, authenticator, url, settings)
                source = verifier
            current = source.current
            security = Security(guard, current, "http", coordinator.layout.namespace)
            caller = web.gateway_caller(source, coordinator.touch)
            if authenticator is not None and settings.dashboard.enabled:  # admins only; never without authentication
                from nats_mcp.dashboard.app import DashboardApp

                checks = web.transport_security(settings, port)
                dashboard = DashboardApp.create(
                    conn,
                    settings,
                    guard,
                    authenticator,
                    hosts=checks.allowed_hosts,
                    origins=checks.allowed_origins,
                    secure=http.tls or url.startswith("https://"),
                )
            drain = drainage.Drain(
                lambda: conn.connected, http.sse_retry_ms, on_refusing=coordinator.waits.stop_waiting
            )
            probes = [
                web.health_route(lambda: conn.connected),
                drainage.readiness_route(drain),
                *(obs.routes() if obs is not None else ()),
            ]
            app = web.build_http_app(
                build_server(coordinator, caller, settings.tool_prefix, security),
                settings,
                port,
                verifier,
                guard.audit,
                extra_routes=[*probes, *(dashboard.routes() if dashboard else ())],
                nats=(conn, coordinator.layout),
            )
            if quickstart:
                await _quickstart(ApiKeys(conn), conn, url, settings, rotate=rotate_key)
            config = uvicorn.Config(
                drainage.DrainGate(app, drain, exempt=_probe_paths(probes, url)),
                log_level="warning",
                timeout_graceful_shutdown=HTTP_LINGER_S,
                lifespan="on",
                access_log=False,
                timeout_keep_alive=75,  # longer than clients keep idle connections, so the client always lets go first
                ssl_certfile=str(http.tls_cert_file) if http.tls_cert_file else None,
                ssl_keyfile=str(http.tls_key_file) if http.tls_key_file else None,
            )
            server = web.QuietServer(config)
            stopping = drainage.OnSignals(drain, server, http.drain_delay_s, http.drain_timeout_s)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):  # drain, stop, then the cleanup below (uvicorn's own
                loop.add_signal_handler(sig, stopping.signal)  # handling re-raised the signal and skipped it)
            serving = asyncio.create_task(server.serve(sockets=[sock]), name="http-server")
            listening = asyncio.create_task(server.listening.wait())
            await asyncio.wait([serving, listening], return_when=asyncio.FIRST_COMPLETED)
            listening.cancel()
            if server.listening.is_set():
                err.print(web.started(url, insecure), highlight=False)
                if dashboard is not None:
                    base = url.removesuffix(http.path)
                    err.print(f"nats-mcp: dashboard (admins) at {base}{dashboard.prefix}", highlight=False)
                if http.port_file is not None:
                    http.port_file.write_text(f"{port}\n")  # only once the socket listens
            try:
                await serving
            finally:
                stopping.cancel()
        finally:  # ours first; then the runtime closes observability, coordinator, audit log, connection
            if authenticator is not None:
                await authenticator.aclose()
            if dashboard is not None:
                await dashboard.data.aclose()


async def _serve_grpc(settings: Settings, policy: Policy, *, insecure: bool) -> None:
    from nats_mcp.api.server import Security, build_server
    from nats_mcp.security.authn.chain import Authenticator
    from nats_mcp.transports.grpc import server as rpc

    g = settings.grpc
    # NATS starts connecting only once the port is bound and the authenticator built (runtime.start below).
    runtime = _runtime(settings, policy, transport="grpc", connect=False)
    conn, guard, coordinator = runtime.conn, runtime.guard, runtime.coordinator
    security = Security(guard, rpc.current_principal, "grpc", coordinator.layout.namespace)
    caller = rpc.grpc_caller(coordinator.touch)
    admission = rpc.Admission(guard, settings)
    service = rpc.McpGrpcService(build_server(coordinator, caller, settings.tool_prefix, security), admission)
    extra = []
    if g.typed_service:
        from nats_mcp.transports.grpc.typed import TYPED_SERVICE, TypedMcpService

        extra.append((TYPED_SERVICE, TypedMcpService(service).handler()))
    transport = rpc.GrpcTransport(service, insecure=insecure, extra=extra)
    conn.add_listener(transport.on_nats_event)
    stop, again = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # our own graceful stop (a second signal cuts it short), then
        loop.add_signal_handler(sig, lambda: (again if stop.is_set() else stop).set())  # the cleanup below
    async with runtime:
        authenticator = None
        try:
            try:
                port = await transport.bind()
            except (OSError, RuntimeError, ValueError) as exc:
                fail(f"cannot serve gRPC on {g.host}:{g.port}: {exc}", code=1)
            if not insecure:
                try:
                    authenticator = Authenticator.from_settings(
                        settings, conn, dev_audiences=[rpc.resource_url(settings, port)]
                    )
                except ValueError as exc:
                    fail(str(exc), code=2)
                admission.provider = authenticator
            runtime.start()
            await _start_observing(runtime)
            await transport.serve()
            host = f"[{g.host}]" if ":" in g.host else g.host
            err.print(rpc.started(f"{host}:{port}", insecure, g.require_client_cert), highlight=False)
            if transport.health_port is not None:
                err.print(
                    f"nats-mcp: grpc.health.v1 only, without TLS, at {host}:{transport.health_port}", highlight=False
                )
            if g.port_file is not None:
                g.port_file.write_text(f"{port}\n")  # only once the server listens
            await stop.wait()
            log.info("shutting down on a signal")
            coordinator.waits.stop_waiting()  # waiting reads answer now (empty) rather than be cancelled at the end
            await transport.drain(g.drain_delay_s, g.drain_timeout_s, again)
        finally:  # ours first; then the runtime closes observability, coordinator, audit log, connection
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await transport.stop()
            if authenticator is not None:
                await authenticator.aclose()


def _probe_paths(probes: list[Any], url: str) -> set[str]:
    """What the HTTP drain keeps answering: health, readiness, metrics and the resource metadata (the Kubernetes
    liveness probe: a draining replica is alive)."""
    from urllib.parse import urlsplit

    from starlette.routing import Route

    from nats_mcp.transports.http.app import metadata_url

    return {r.path for r in probes if isinstance(r, Route)} | {urlsplit(str(metadata_url(url))).path}


def _runtime(
    settings: Settings,
    policy: Policy,
    *,
    transport: Transport,
    local_agent: bool = False,
    connect: bool = True,
    offline_drain_s: float | None = None,
) -> Runtime:
    """The process's :class:`~nats_mcp.runtime.Runtime`, observing; tracing that cannot be set up is a usage error."""
    from nats_mcp.observe.tracing import TracingError
    from nats_mcp.runtime import Runtime

    try:
        return Runtime(
            settings,
            policy,
            transport=transport,
            local_agent=local_agent,
            connect=connect,
            offline_drain_s=offline_drain_s,
        )
    except TracingError as exc:
        fail(str(exc), code=2)


async def _start_observing(runtime: Runtime) -> None:
    m = runtime.settings.observe.metrics
    try:
        await runtime.start_observing()
    except OSError as exc:
        fail(f"cannot serve metrics on {m.host}:{m.port}: {exc.strerror}", code=1)


async def _quickstart(keys: Any, conn: Any, url: str, settings: Settings, *, rotate: bool) -> None:
    """The development API key (kept across runs) and the client configuration to paste."""
    from nats_mcp.cli import quickstart as qs

    if not await conn.wait_connected(30):
        fail("NATS did not come up within 30 s; try `nats-mcp doctor`", code=1)
    dev = await qs.dev_key(keys, qs.key_file(settings), rotate=rotate)
    out.print(qs.banner(url, dev, settings), highlight=False, soft_wrap=True)


def serve(
    ctx: typer.Context,
    transport: Annotated[str | None, typer.Option(help="stdio (default), http or grpc.")] = None,
    host: Annotated[str | None, typer.Option(help="http/grpc: address to bind (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(help="http/grpc: port (default 8765 for http, 8766 for grpc; 0 picks a free one).")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="http/grpc: TLS certificate chain (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="http/grpc: TLS private key (PEM).")] = None,
    client_ca: Annotated[
        Path | None, typer.Option(help="grpc: CA bundle client certificates must chain to (mutual TLS).")
    ] = None,
    insecure_dev: Annotated[
        bool, typer.Option("--insecure-dev", help="http/grpc: no authentication (development only; loopback only).")
    ] = False,
    quickstart: Annotated[
        bool, typer.Option("--quickstart", help="http: a development API key (kept across runs) and client config.")
    ] = False,
    rotate_key: Annotated[
        bool,
        typer.Option("--rotate-key", help="http --quickstart: revoke the kept development key and make a new one."),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus /metrics on this port (observe.metrics.host, loopback by default; 0 "
            "picks a free one). HTTP also serves /metrics on its own port."
        ),
    ] = None,
) -> None:
    """Serve the MCP tools over stdio (default), streamable HTTP or gRPC (mutual TLS). Starts the embedded NATS if no
    NATS URL is set."""
    serve_command(
        state(ctx),
        transport=transport,
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        client_ca=client_ca,
        insecure_dev=insecure_dev,
        quickstart=quickstart,
        rotate_key=rotate_key,
        metrics_port=metrics_port,
    )


def serve_command(
    cli: CliState,
    *,
    transport: str | None = None,
    host: str | None = None,
    port: int | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    client_ca: Path | None = None,
    insecure_dev: bool = False,
    quickstart: bool = False,
    rotate_key: bool = False,
    metrics_port: int | None = None,
    startup: Startup | None = None,
) -> None:
    """`serve` once its options are read (by Typer, or by hand on the stdio fast path: cli/fastpath.py)."""
    section = "http"
    if transport == "grpc" or (
        transport is None
        and any(v is not None for v in (host, port, tls_cert, tls_key))
        and cli.load().settings.transport == "grpc"
    ):
        section = "grpc"  # --host/--port/--tls-* set the section of the transport being served
    extra = {
        "transport": transport,
        f"{section}.host": host,
        f"{section}.port": port,
        f"{section}.tls_cert_file": tls_cert,
        f"{section}.tls_key_file": tls_key,
        "grpc.client_ca_file": client_ca,
        "observe.metrics.port": metrics_port,
    }
    flags = {
        "transport": "--transport",
        f"{section}.host": "--host",
        f"{section}.port": "--port",
        f"{section}.tls_cert_file": "--tls-cert",
        f"{section}.tls_key_file": "--tls-key",
        "grpc.client_ca_file": "--client-ca",
        "observe.metrics.port": "--metrics-port",
    }
    from nats_mcp.observe.logging import setup_logging

    loaded = cli.load(extra, flags)
    settings = loaded.settings
    setup_logging(settings.logging)
    if settings.transport == "grpc":
        _serve_grpc_checked(settings, insecure=insecure_dev, quickstart=quickstart)
        return
    if settings.transport != "http" and (insecure_dev or quickstart):
        fail("--insecure-dev and --quickstart go with --transport http or grpc", code=2)
    policy = load_policy(settings.security.policy_file)
    if settings.transport == "http":
        sec = settings.security
        if insecure_dev and not loopback_host(settings.http.host):
            fail(
                f"--insecure-dev serves without authentication and binds to loopback only, not {settings.http.host}",
                code=2,
            )
        if not insecure_dev and not (sec.jwt_issuers or sec.dev_tokens or sec.introspection.url or sec.api_keys):
            fail(
                "HTTP needs authentication: configure security.jwt_issuers, security.introspection.url or "
                "security.api_keys (or pass --insecure-dev for a loopback-only development server)",
                code=2,
            )
        if insecure_dev:
            err.print(
                "[bold red]WARNING: --insecure-dev: no authentication; anyone on this machine can act as any "
                "agent. Development only.[/]"
            )
        if rotate_key and not quickstart:
            fail("--rotate-key goes with --quickstart", code=2)
        if quickstart:
            from nats_mcp.cli.quickstart import with_local_team_limits

            settings = with_local_team_limits(loaded)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                _serve_http(settings, policy, insecure=insecure_dev, quickstart=quickstart, rotate_key=rotate_key)
            )
        return
    if startup is not None and startup.front is None:
        from nats_mcp.cli.stdio_start import cache_deps

        startup.deps = cache_deps(loaded)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(settings, policy, startup))
    except asyncio.CancelledError:  # a signal during the shutdown itself (a client that stops waiting kills us)
        log.warning("shutdown cut short by a signal; audit records not yet written are lost")
    _exit_at_once()


def _exit_at_once() -> None:
    """End the process now that everything of ours is closed. The interpreter's own teardown — freeing the SDK's,
    pydantic's and rich's objects one by one — takes most of a second on a busy machine, while a stdio client waits
    for the process to end (and kills it if that takes too long)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _serve_grpc_checked(settings: Settings, *, insecure: bool, quickstart: bool) -> None:
    """Refuse a gRPC server that would serve without TLS or without a way to authenticate, then run it."""
    g, sec = settings.grpc, settings.security
    if quickstart:
        fail("--quickstart goes with --transport http", code=2)
    policy = load_policy(sec.policy_file)
    if insecure:
        if not loopback_host(g.host):
            fail(
                f"--insecure-dev serves without TLS or authentication and binds to loopback only, not {g.host}", code=2
            )
        err.print(
            "[bold red]WARNING: --insecure-dev: no TLS, no authentication; anyone on this machine can act as "
            "any agent. Development only.[/]"
        )
    else:
        if not g.tls:
            fail(
                "gRPC needs TLS: set grpc.tls_cert_file and grpc.tls_key_file (--tls-cert/--tls-key) and "
                "grpc.client_ca_file (--client-ca) for mutual TLS, or pass --insecure-dev for a loopback-only "
                "development server",
                code=2,
            )
        if g.require_client_cert and g.client_ca_file is None:
            fail(
                "gRPC requires client certificates (grpc.require_client_cert): set grpc.client_ca_file "
                "(--client-ca), or turn grpc.require_client_cert off and accept JWTs or API keys",
                code=2,
            )
        if not g.require_client_cert and not (
            sec.jwt_issuers or sec.dev_tokens or sec.introspection.url or sec.api_keys
        ):
            fail(
                "gRPC without client certificates needs JWTs or API keys: configure security.jwt_issuers, "
                "security.introspection.url or security.api_keys",
                code=2,
            )
        for name, path in (
            ("tls_cert_file", g.tls_cert_file),
            ("tls_key_file", g.tls_key_file),
            ("client_ca_file", g.client_ca_file),
        ):
            if path is not None and not path.is_file():
                fail(f"grpc.{name}: {path} is not a readable file", code=2)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_grpc(settings, policy, insecure=insecure))
