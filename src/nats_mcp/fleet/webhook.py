"""The ``webhook`` mechanism boundary: a start or stop is a signed HTTP POST to a receiver that runs the agent.

The body is JSON (see :func:`start_body`); the signature header ``X-Nats-Mcp-Signature: t=<unix>,v1=<hex>`` is
HMAC-SHA256 with the target's secret over ``<t>.`` followed by the exact body bytes. A receiver recomputes it,
compares in constant time and refuses a ``t`` more than :data:`REPLAY_WINDOW_S` away from its clock; the
``X-Nats-Mcp-Delivery`` id (also ``delivery`` in the body) is the same on every retry of one POST, so it can drop
repeats. Connection errors, 5xx and 429 are retried with exponential backoff, bounded in attempts and total time;
another 4xx is final. The receiver may answer ``{"ref": "..."}``, kept in the handle and sent back with the stop.
The mechanism cannot watch what the receiver started: :meth:`WebhookMechanism.poll` answers None and the
coordinator goes by the agent's registry presence.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import ssl
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from nats_mcp.fleet.mechanism import Exit, Handle, MechanismError, StartSpec
from nats_mcp.fleet.specparts import EnvValue, SecretSource, SpecModel, TargetsError, check_env, resolve_env

if TYPE_CHECKING:
    import httpx2

log = logging.getLogger("nats_mcp.fleet")

SIGNATURE_HEADER = "X-Nats-Mcp-Signature"
DELIVERY_HEADER = "X-Nats-Mcp-Delivery"
REPLAY_WINDOW_S = 300
"""How far a receiver should accept the signature's timestamp from its own clock (either way)."""
_REF_MAX = 512


class WebhookSpec(SpecModel):
    """The ``webhook`` mechanism: signed POSTs to ``url`` (https; plain http only to a loopback address)."""

    url: str
    secret: SecretSource
    include_env: bool = Field(default=False, alias="includeEnv")
    env: dict[str, EnvValue] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0, le=300, alias="timeoutS")
    attempts: int = Field(default=5, ge=1, le=20)
    backoff_s: float = Field(default=0.5, gt=0, le=60, alias="backoffS")
    give_up_after_s: float = Field(default=30.0, gt=0, le=600, alias="giveUpAfterS")

    @model_validator(mode="after")
    def _checks(self) -> WebhookSpec:
        parts = urlsplit(self.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"url {self.url!r} is not an http(s) URL")
        if parts.username is not None or parts.password is not None:
            raise ValueError("url must not hold credentials (the signature authenticates the coordinator)")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValueError("url must be https (plain http only to a loopback address)")
        if self.env and not self.include_env:
            raise ValueError("env is sent only with includeEnv: true; set it or drop env")
        check_env(self.env)
        return self

    @property
    def safe_url(self) -> str:
        """The URL without its query (which might carry a token) for messages."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, header: str, body: bytes, now: float, window_s: float = REPLAY_WINDOW_S) -> bool:
    """The receiver's check (the documented recipe, also used by the tests' receiver): a well-formed header, a
    timestamp within ``window_s`` of ``now``, and a ``v1`` equal (in constant time) to the HMAC it recomputes."""
    fields = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        stamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - stamp) > window_s:
        return False
    expected = sign(secret, stamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def start_body(spec: StartSpec, delivery: str, env: dict[str, str] | None) -> dict[str, Any]:
    """What a start sends: who to start and for what; the agent's environment only when the target asks for it."""
    body: dict[str, Any] = {
        "event": "start",
        "delivery": delivery,
        "target": spec.target,
        "instance": spec.instance,
        "agent": {"guid": spec.agent_guid, "name": spec.agent_name},
        "capabilities": list(spec.capabilities),
        "namespace": spec.env.get("NATS_MCP_NAMESPACE"),
    }
    if env is not None:
        body["env"] = env
    return body


class WebhookMechanism:
    """Signed POSTs for the targets' ``webhook`` sections (``specs``: target name -> its section)."""

    name = "webhook"

    def __init__(
        self,
        specs: dict[str, WebhookSpec],
        environ: Mapping[str, str] | None = None,
        client: httpx2.AsyncClient | None = None,
    ) -> None:
        import os

        self.specs = specs
        self.environ = dict(os.environ if environ is None else environ)
        self._client = client

    async def start(self, spec: StartSpec) -> Handle:
        hook = self.specs[spec.target]
        env = {**spec.env, **resolve_env(hook, self.environ)} if hook.include_env else None
        answer = await self._post(hook, start_body(spec, secrets.token_hex(16), env), "start")
        ref: dict[str, Any] = {
            "target": spec.target,
            "instance": spec.instance,
            "agent": {"guid": spec.agent_guid, "name": spec.agent_name},
        }
        if isinstance(answer, dict) and isinstance(answer.get("ref"), str):
            ref["ref"] = answer["ref"][:_REF_MAX]
        return Handle(self.name, ref)

    async def stop(self, handle: Handle) -> None:
        hook = self.specs.get(str(handle.ref.get("target")))
        if hook is None:
            return  # a target no longer in the file: no URL or secret to use
        body = {"event": "stop", "delivery": secrets.token_hex(16), **handle.ref}
        try:
            await self._post(hook, body, "stop")
        except (MechanismError, TargetsError) as exc:  # nothing more to do from here; say so
            log.warning("%s; instance %s may still run", exc, handle.ref.get("instance"))

    async def poll(self, handle: Handle) -> Exit | bool | None:
        return None  # the receiver's agents are watched through their registry presence

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _post(self, hook: WebhookSpec, body: dict[str, Any], what: str) -> object:
        """POST ``body`` signed, with retries; the receiver's JSON answer (None if not JSON); MechanismError when
        it is refused or never answered (TargetsError when the secret cannot be read)."""
        import httpx2

        secret = hook.secret.read("webhook secret", self.environ).encode()
        data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        if self._client is None:
            self._client = httpx2.AsyncClient(timeout=hook.timeout_s, follow_redirects=False)
        deadline = time.monotonic() + hook.give_up_after_s
        why = "no attempt"
        for attempt in range(1, hook.attempts + 1):
            headers = {
                "content-type": "application/json",
                SIGNATURE_HEADER: sign(secret, int(time.time()), data),
                DELIVERY_HEADER: str(body["delivery"]),
            }
            try:
                resp = await self._client.post(hook.url, content=data, headers=headers, timeout=hook.timeout_s)
            except httpx2.TransportError as exc:
                if (tls := _tls_failure(exc)) is not None:  # retrying cannot make a certificate trusted
                    raise MechanismError(
                        f"webhook {what} to {hook.safe_url}: TLS failed ({tls}); not retried"
                    ) from None
                why = f"no answer ({type(exc).__name__})"
            else:
                if 200 <= resp.status_code < 300:
                    try:
                        return resp.json()
                    except ValueError:
                        return None
                why = f"answered {resp.status_code}{_hint(resp.status_code)}"
                if resp.status_code != 429 and resp.status_code < 500:
                    raise MechanismError(f"webhook {what} to {hook.safe_url} {why}; not retried")
            wait = hook.backoff_s * 2 ** (attempt - 1)
            if attempt == hook.attempts or time.monotonic() + wait > deadline:
                break
            log.info("webhook %s to %s %s; retrying in %.2gs", what, hook.safe_url, why, wait)
            await asyncio.sleep(wait)  # backoff between attempts, not a synchronisation
        raise MechanismError(f"webhook {what} to {hook.safe_url} {why}; gave up after {attempt} attempt(s)")


def _hint(status: int) -> str:
    if status == 401:
        return " (the receiver refused the signature or the request; check that both sides hold the same secret)"
    if status == 403:
        return " (the receiver refused the request)"
    return ""


def _tls_failure(exc: BaseException) -> str | None:
    """The certificate or TLS error behind a transport error, if that is what it is."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or "certificate not trusted"
        if isinstance(seen, ssl.SSLError):
            return seen.reason or type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
