"""The diagnosis boundary: checks of reachability, authentication, TLS, version, JetStream and clock skew.

Each check yields a :class:`Check` with a status, a secret-free detail and a fix hint; ``nats-mcp
doctor`` renders them. Nothing here changes state except a short-lived in-memory stream used to read
the server's clock, which is deleted at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets as pysecrets
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from nats.aio.client import Client
from nats.js.api import StorageType, StreamConfig

from nats_mcp.bus.connection import connect_once, server_version
from nats_mcp.bus.connplan import ConnectPlan, plan_connection
from nats_mcp.bus.errors import BusError, NatsConnectError
from nats_mcp.config.settings import Settings
from nats_mcp.core.pins import chain_pins, context_pins
from nats_mcp.core.redact import redact

Status = Literal["pass", "warn", "fail", "skip"]
MIN_SERVER_VERSION = (2, 10, 0)
MAX_CLOCK_SKEW_S = 2.0
_DEFAULT_PORTS = {"nats": 4222, "tls": 4222, "ws": 80, "wss": 443}
PIN_HINT = "to pin the server, put one of these (its CA's, to survive leaf renewals) in nats.tls.pins"


@dataclass
class Check:
    """One line of the doctor's table."""

    name: str
    status: Status
    detail: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.lstrip("v").split("-")[0].split("."):
        parts.append(int(piece) if piece.isdigit() else 0)
    return tuple(parts)


async def _tcp_reachable(url: str, timeout: float) -> str | None:
    """None when a TCP connection opens, else the reason."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 4222)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return None


def _ssl_object(nc: Client) -> Any:
    transport: Any = getattr(nc, "_transport", None)
    writer: Any = getattr(transport, "_io_writer", None)
    return writer.get_extra_info("ssl_object") if writer is not None else None


def tls_details(nc: Client) -> str | None:
    """Protocol and cipher of the live connection, or None if it is plaintext (best effort)."""
    ssl_object = _ssl_object(nc)
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return f"{ssl_object.version()} ({cipher[0] if cipher else 'unknown cipher'}), certificate verified"


def pin_check(nc: Client, plan: ConnectPlan) -> Check | None:
    """The keys (pins) of the chain the live TLS connection verified, and whether ``nats.tls.pins`` names one."""
    ssl_object = _ssl_object(nc)
    if ssl_object is None:
        return None
    seen = chain_pins(ssl_object)
    pins = context_pins(plan.options.get("tls"))
    shown = ", ".join(seen)
    if not pins:
        return Check("pins", "pass", f"not pinned; the server's chain (leaf first): {shown}", PIN_HINT)
    matched = ", ".join(p for p in seen if p in pins)
    return Check("pins", "pass", f"nats.tls.pins matches {matched}; the server's chain (leaf first): {shown}")


async def _clock_skew(nc: Client) -> float:
    """Server clock minus local clock, in seconds, read from a throwaway in-memory stream's creation time."""
    js = nc.jetstream()
    name = f"NATS_MCP_DOCTOR_{pysecrets.token_hex(6).upper()}"
    before = time.time()
    info = await js.add_stream(
        StreamConfig(name=name, subjects=[f"_nats_mcp.doctor.{name.lower()}"], storage=StorageType.MEMORY, max_msgs=1)
    )
    after = time.time()
    with contextlib.suppress(Exception):
        await js.delete_stream(name)
    created = info.created
    if created is None:
        raise BusError("the server did not report the stream creation time")
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    local = datetime.fromtimestamp((before + after) / 2, tz=UTC)
    return (created - local).total_seconds()


async def run_checks(settings: Settings, *, timeout: float = 5.0) -> list[Check]:
    """Every NATS check in order; later checks are skipped when an earlier one makes them meaningless."""
    checks: list[Check] = []
    plan: ConnectPlan
    try:
        if settings.nats.servers:
            plan = plan_connection(settings)
            checks.append(Check("target", "pass", f"{len(plan.servers)} server(s): {plan.describe()}"))
        else:
            from nats_mcp.bus.embedded import EmbeddedNats

            embedded = EmbeddedNats.from_settings(settings)
            status = embedded.status()
            if not status.running or status.url is None:
                checks.append(
                    Check(
                        "target",
                        "fail",
                        f"no NATS URL configured and the embedded server is not running (data: {status.data_dir})",
                        "run `nats-mcp nats start` (or just `nats-mcp serve`, which starts it), or set NATS_URL",
                    )
                )
                return checks
            info = embedded.ensure_running(timeout)
            plan = plan_connection(settings, embedded_url=info.url, embedded_token=info.token)
            checks.append(Check("target", "pass", f"embedded nats-server pid {info.pid} at {info.url}"))
    except BusError as exc:
        checks.append(Check("target", "fail", redact(exc.message), exc.hint or ""))
        return checks

    unreachable = {url: await _tcp_reachable(url, timeout) for url in plan.servers}
    bad = {u: r for u, r in unreachable.items() if r}
    if len(bad) == len(plan.servers):
        detail = "; ".join(f"{u}: {r}" for u, r in bad.items())
        checks.append(Check("reachability", "fail", detail, "start NATS or fix nats.url (host, port, firewall)"))
        return checks
    reach = "all servers" if not bad else f"{len(plan.servers) - len(bad)}/{len(plan.servers)} servers"
    status_r: Status = "pass" if not bad else "warn"
    checks.append(Check("reachability", status_r, f"TCP connection opened to {reach}"))

    try:
        nc = await asyncio.wait_for(connect_once(plan), timeout * max(2, len(plan.servers)))
    except (NatsConnectError, TimeoutError) as exc:
        err = exc if isinstance(exc, NatsConnectError) else NatsConnectError("the connection attempt timed out")
        if err.kind == "tls":
            checks.append(Check("authentication", "skip", f"method: {plan.method} (not tried: TLS failed)"))
            checks.append(Check("tls", "fail", plan.scrub(err.message), err.hint or ""))
        else:
            checks.append(Check("authentication", "fail", plan.scrub(err.message), err.hint or ""))
        return checks
    try:
        checks.append(Check("authentication", "pass", f"method: {plan.method}"))
        tls = tls_details(nc)
        if tls:
            checks.append(Check("tls", "pass", tls))
            pinned = pin_check(nc, plan)
            if pinned is not None:
                checks.append(pinned)
        elif plan.tls:  # wss:// is TLS at the WebSocket layer, not visible on the NATS transport
            checks.append(Check("tls", "pass", "TLS at the WebSocket layer (wss://)"))
        else:
            host = urlsplit(plan.servers[0]).hostname or ""
            local = host in ("127.0.0.1", "localhost", "::1")
            checks.append(
                Check(
                    "tls",
                    "pass" if local else "warn",
                    "plaintext" + (" on loopback" if local else ""),
                    "" if local else "use tls:// with nats.tls.ca_file for NATS across machines",
                )
            )
        version = server_version(nc)
        ok = _version_tuple(version) >= MIN_SERVER_VERSION
        want = ".".join(map(str, MIN_SERVER_VERSION))
        checks.append(
            Check(
                "server version",
                "pass" if ok else "fail",
                f"nats-server {version}",
                "" if ok else f"upgrade to >= {want}",
            )
        )
        try:
            account = await nc.jetstream(domain=settings.nats.jetstream_domain).account_info()
            checks.append(
                Check(
                    "jetstream",
                    "pass",
                    f"enabled; {account.streams} stream(s), {account.storage} bytes stored",
                )
            )
        except Exception as exc:
            checks.append(
                Check(
                    "jetstream",
                    "fail",
                    plan.scrub(f"not available: {exc}"),
                    "enable JetStream on the server (-js / jetstream {}) and for this account; check jetstream_domain",
                )
            )
            return checks
        try:
            skew = await _clock_skew(nc)
            ok = abs(skew) <= MAX_CLOCK_SKEW_S
            checks.append(
                Check(
                    "clock skew",
                    "pass" if ok else "fail",
                    f"server clock {skew:+.3f} s from this machine",
                    "" if ok else "synchronise clocks (NTP): leases, deadlines and presence depend on them",
                )
            )
        except Exception as exc:
            checks.append(
                Check("clock skew", "warn", plan.scrub(f"not measured: {exc}"), "needs permission to create a stream")
            )
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
    return checks
