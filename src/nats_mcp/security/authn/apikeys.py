"""The API-key boundary: keys made, listed and revoked in a deployment-wide KV bucket, and presented keys -> Principal.

A key is ``nmk_<12 hex id>_<43 base64url secret>``; it is shown once, when made. The bucket keeps, per id, the
name, roles, namespaces, creation and expiry times, a revoked flag and ``scrypt(secret, salt)`` — never the secret.
Checking a key: parse, look the record up by id (an unknown id still costs one scrypt, on a dummy record, so timing
does not tell ids apart), compare in constant time, then expiry and revocation. Unknown id and wrong secret are
refused with the same reason. Successful scrypt results are remembered briefly (keyed by the SHA-256 of the whole
key and checked against the record's hash, bounded), so a valid key costs no scrypt after its first use.

Records are looked up in a watched copy of the bucket kept by each process (:class:`~nats_mcp.bus.kvcache.
WatchedBucket`), not read from NATS per request: a revocation or change made anywhere reaches every process with
the watch's next message (milliseconds; bench/keys.py measures it), this process's own writes at once. The copy is
used only while it is *live* — loaded over the current connection, its watch running; from the moment the
connection drops until a new watch has loaded a fresh copy, records are read from the bucket (and refused as
``unavailable`` when NATS is away), so a stale copy never lets a revoked key in. An id the copy does not hold is read
from the bucket too, so a key made on another process a moment ago works at once. The first request waits (up to
``ready_timeout_s``) for the copy to load.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import nats.errors
import nats.js.errors

from nats_mcp.bus.connection import NatsConnection
from nats_mcp.bus.errors import NatsUnavailableError
from nats_mcp.bus.kvcache import Bucket, WatchedBucket
from nats_mcp.bus.layout import APIKEYS_BUCKET
from nats_mcp.core.names import InvalidNameError, validate_name
from nats_mcp.security.authn import Credentials
from nats_mcp.security.errors import AuthenticationError
from nats_mcp.security.principal import Principal

log = logging.getLogger("nats_mcp.security.authn.apikeys")

"""KV bucket of API key records, keyed by key id (deployment-wide: not namespaced)."""
KEY_PREFIX = "nmk_"
KEY_PATTERN = re.compile(rf"^{re.escape(KEY_PREFIX)}([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
ROLE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
HASH_BYTES = 32
MAX_CONCURRENT_SCRYPT = 4
"""Each scrypt takes ~16 MiB and a few tens of ms of CPU; a flood of bad keys queues instead of exhausting memory."""

# The record an unknown id is checked against: same cost, never matches.
_DUMMY_SALT = os.urandom(16)
_DUMMY_HASH = os.urandom(HASH_BYTES)

KeyStatus = Literal["active", "expired", "revoked"]


class ApiKeyError(ValueError):
    """A key cannot be made or changed (bad name, unknown id); the message is safe to show."""


def derive(secret: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> bytes:
    """scrypt(secret, salt) — the only form in which a secret is ever stored."""
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=HASH_BYTES)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class ApiKeyRecord:
    """What the bucket holds for one key."""

    id: str
    name: str
    roles: tuple[str, ...]
    namespaces: tuple[str, ...] | None
    created: float
    expires: float | None
    revoked: bool
    revoked_at: float | None
    salt: bytes
    hash: bytes
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    def status(self, now: float | None = None) -> KeyStatus:
        if self.revoked:
            return "revoked"
        if self.expires is not None and self.expires <= (time.time() if now is None else now):
            return "expired"
        return "active"

    def public(self, now: float | None = None) -> dict[str, Any]:
        """Everything but the salt and hash (what ``keys list`` shows)."""
        return {
            "id": self.id,
            "name": self.name,
            "roles": list(self.roles),
            "namespaces": list(self.namespaces) if self.namespaces is not None else None,
            "created": self.created,
            "expires": self.expires,
            "revoked": self.revoked,
            "revoked_at": self.revoked_at,
            "status": self.status(now),
        }

    def encode(self) -> bytes:
        data = asdict(self)
        data.update(salt=_b64(self.salt), hash=_b64(self.hash), roles=list(self.roles))
        data["namespaces"] = list(self.namespaces) if self.namespaces is not None else None
        data["alg"] = "scrypt"
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ApiKeyRecord:
        """Parse a stored record; ValueError when it is not one of ours (or asks for absurd scrypt costs)."""
        try:
            data = json.loads(raw)
            ns = data.get("namespaces")
            record = cls(
                id=str(data["id"]),
                name=str(data["name"]),
                roles=tuple(str(r) for r in data["roles"]),
                namespaces=tuple(str(n) for n in ns) if ns is not None else None,
                created=float(data["created"]),
                expires=float(data["expires"]) if data.get("expires") is not None else None,
                revoked=bool(data["revoked"]),
                revoked_at=float(data["revoked_at"]) if data.get("revoked_at") is not None else None,
                salt=base64.b64decode(data["salt"], validate=True),
                hash=base64.b64decode(data["hash"], validate=True),
                n=int(data.get("n", SCRYPT_N)),
                r=int(data.get("r", SCRYPT_R)),
                p=int(data.get("p", SCRYPT_P)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not an API key record ({type(exc).__name__})") from None
        sane = 2**10 <= record.n <= 2**20 and 1 <= record.r <= 32 and 1 <= record.p <= 4
        if data.get("alg", "scrypt") != "scrypt" or not sane:
            raise ValueError("unsupported key derivation parameters")
        return record


def parse_key(key: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    match = KEY_PATTERN.fullmatch(key) if len(key) < 128 else None
    return (match.group(1), match.group(2)) if match else None


def _check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ApiKeyError(f"invalid key name {name[:80]!r}: use 1-64 characters A-Z a-z 0-9 . _ @ -")
    return name


def _check_roles(roles: Iterable[str]) -> tuple[str, ...]:
    out = tuple(sorted(set(roles)))
    if not out:
        raise ApiKeyError("a key needs at least one role")
    for role in out:
        if not ROLE_PATTERN.fullmatch(role):
            raise ApiKeyError(f"invalid role {role[:80]!r}: use 1-64 characters A-Z a-z 0-9 . _ : -")
    return out


def _check_namespaces(namespaces: Iterable[str] | None) -> tuple[str, ...] | None:
    if namespaces is None:
        return None
    out = tuple(sorted(set(namespaces)))
    try:
        for ns in out:
            validate_name(ns, "namespace")
    except InvalidNameError as exc:
        raise ApiKeyError(str(exc)) from None
    return out or None


def check_new_key(
    name: str, roles: Iterable[str], namespaces: Iterable[str] | None = None
) -> tuple[str, tuple[str, ...], tuple[str, ...] | None]:
    """Validated (name, roles, namespaces) for a new key; ApiKeyError with a message fit to show otherwise."""
    return _check_name(name), _check_roles(roles), _check_namespaces(namespaces)


class ApiKeys:
    """The API-key store and provider over one NATS connection."""

    def __init__(
        self,
        conn: NatsConnection,
        *,
        cache_ttl_s: float = 60.0,
        cache_max: int = 10_000,
        clock: Callable[[], float] = time.time,
        watch: bool = True,
        ready_timeout_s: float = 5.0,
    ) -> None:
        self.bucket = Bucket(conn, APIKEYS_BUCKET, description="nats-mcp API keys (salted scrypt hashes only)")
        self._copy: WatchedBucket[ApiKeyRecord] | None = (
            WatchedBucket(self.bucket, _decode_entry, _unchanged) if watch else None
        )
        """The watched copy of the bucket that checks read (``watch=False``: every check reads the bucket)."""
        self.ready_timeout_s = ready_timeout_s
        self.reads = 0
        """Records read from the bucket by checks (the copy missed, or was not live): for tests and metrics."""
        self.cache_ttl_s = cache_ttl_s
        self.cache_max = cache_max
        self.clock = clock
        self._verified: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()
        self._scrypt = asyncio.Semaphore(MAX_CONCURRENT_SCRYPT)
        self._deriving: dict[tuple[bytes, bytes, int, int, int], asyncio.Task[bytes]] = {}
        """Derivations under way, by (digest of the presented key, salt, n, r, p): requests presenting the same key
        at the same moment (many agents of one key when its cache entry lapses) share one scrypt."""
        self.derivations = 0
        """scrypt runs done while checking keys (for tests and metrics)."""

    # -- management ------------------------------------------------------------------------------

    async def create(
        self,
        name: str,
        roles: Iterable[str],
        *,
        namespaces: Iterable[str] | None = None,
        ttl_s: float | None = None,
    ) -> tuple[str, ApiKeyRecord]:
        """Make a key: returns the full key (show it once, never store it) and the stored record."""
        name, role_set, ns = check_new_key(name, roles, namespaces)
        if ttl_s is not None and ttl_s <= 0:
            raise ApiKeyError("the lifetime must be positive")
        kv = await self.bucket.kv()
        for _ in range(5):
            key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), os.urandom(16)
            now = self.clock()
            record = ApiKeyRecord(
                id=key_id,
                name=name,
                roles=role_set,
                namespaces=ns,
                created=now,
                expires=now + ttl_s if ttl_s is not None else None,
                revoked=False,
                revoked_at=None,
                salt=salt,
                hash=await asyncio.to_thread(derive, secret, salt),
            )
            try:
                revision = await kv.create(key_id, record.encode())
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # a 48-bit id collided: draw another
            if self._copy is not None:
                self._copy.apply(key_id, revision, record)
            log.info("API key %s (%s) created", key_id, name)
            return f"{KEY_PREFIX}{key_id}_{secret}", record
        raise ApiKeyError("could not allocate a key id")  # pragma: no cover - five 48-bit collisions in a row

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        """The record of ``key_id``, or None."""
        if not re.fullmatch(r"[0-9a-f]{12}", key_id):
            return None
        kv = await self.bucket.kv()
        try:
            entry = await kv.get(key_id)
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        try:
            return ApiKeyRecord.decode(entry.value)
        except ValueError as exc:
            log.warning("API key record %s is unreadable: %s", key_id, exc)
            return None

    async def records(self) -> list[ApiKeyRecord]:
        """Every record, oldest first."""
        kv = await self.bucket.kv()
        records: list[ApiKeyRecord] = []
        watcher = await kv.watchall(ignore_deletes=True)
        try:
            while (entry := await watcher.updates(timeout=10.0)) is not None:  # type: ignore[no-untyped-call]
                if entry.value:
                    try:
                        records.append(ApiKeyRecord.decode(entry.value))
                    except ValueError as exc:
                        log.warning("API key record %s is unreadable: %s", entry.key, exc)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return sorted(records, key=lambda r: (r.created, r.id))

    async def revoke(self, key_id: str) -> tuple[ApiKeyRecord, bool]:
        """Mark a key revoked (compare-and-set on the record). Returns the record and whether it changed."""
        kv = await self.bucket.kv()
        for _ in range(10):
            if not re.fullmatch(r"[0-9a-f]{12}", key_id):
                break
            try:
                entry = await kv.get(key_id)
            except nats.js.errors.KeyNotFoundError:
                break
            if entry.value is None:
                break
            record = ApiKeyRecord.decode(entry.value)
            if record.revoked:
                return record, False
            updated = replace(record, revoked=True, revoked_at=self.clock())
            try:
                revision = await kv.update(key_id, updated.encode(), last=entry.revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # changed underneath: read again
            if self._copy is not None:
                self._copy.apply(key_id, revision, updated)  # refused here at once, elsewhere with the watch's news
            log.info("API key %s (%s) revoked", key_id, record.name)
            return updated, True
        raise ApiKeyError(f"no API key with id {key_id[:40]!r}")

    # -- authentication --------------------------------------------------------------------------

    async def authenticate(self, credentials: Credentials) -> Principal:
        key = credentials.api_key or credentials.bearer
        if not key:
            raise AuthenticationError("missing_credentials", "no API key")
        return await self.verify(key, agent=credentials.agent, peer=credentials.peer)

    async def verify(self, key: str, *, agent: str | None = None, peer: str | None = None) -> Principal:
        """The principal of a valid, unexpired, unrevoked key; AuthenticationError with a reason code otherwise."""
        try:
            record = await self._check(key)
        except AuthenticationError as exc:
            log.info("API key refused: %s%s", exc.reason, f" (id {exc.subject})" if exc.subject else "")
            raise
        return Principal(
            subject=record.name,
            issuer="apikey",
            method="apikey",
            roles=frozenset(record.roles),
            namespaces=frozenset(record.namespaces) if record.namespaces is not None else None,
            peer=peer,
            agent=agent,
            key_id=record.id,
            claims={"key_id": record.id, "name": record.name, "expires": record.expires},
        )

    async def _check(self, key: str) -> ApiKeyRecord:
        parsed = parse_key(key)
        if parsed is None:
            raise AuthenticationError("malformed", f"not an {KEY_PREFIX} API key")
        key_id, secret = parsed
        try:
            record = await self._lookup(key_id)
        except (NatsUnavailableError, nats.errors.Error, TimeoutError) as exc:
            log.warning("cannot read API key records: %s", type(exc).__name__)
            raise AuthenticationError("unavailable", "API key store unreachable", subject=key_id) from None
        if not await self._matches(key, secret, record):
            raise AuthenticationError("bad_signature", "API key not recognized", subject=key_id)
        assert record is not None  # a match implies a record
        status = record.status(self.clock())
        if status != "active":
            raise AuthenticationError(status, subject=key_id)
        return record

    async def _lookup(self, key_id: str) -> ApiKeyRecord | None:
        """The record of ``key_id`` from the watched copy while it is live (starting it on first use), else — and for
        an id the copy does not hold — from the bucket."""
        copy = self._copy
        if copy is not None:
            copy.start()
            # Only the first load is waited for; a copy catching up after a reconnection is read around at once.
            first = not copy.ready.is_set() and self.bucket.conn.connected
            if copy.live or (first and await copy.wait_live(self.ready_timeout_s)):
                held = copy.get(key_id)
                if held is not None:
                    return held[1]
        self.reads += 1
        return await self.get(key_id)

    async def aclose(self) -> None:
        """Stop the watch of the bucket (if it was started)."""
        if self._copy is not None:
            await self._copy.close()

    async def _matches(self, key: str, secret: str, record: ApiKeyRecord | None) -> bool:
        digest = hashlib.sha256(key.encode()).digest()
        now = self.clock()
        cached = self._verified.get(digest)
        if cached is not None and record is not None:
            stored, until = cached
            if until > now and hmac.compare_digest(stored, record.hash):
                return True
        if cached is not None:
            del self._verified[digest]
        salt, want = (record.salt, record.hash) if record is not None else (_DUMMY_SALT, _DUMMY_HASH)
        n, r, p = (record.n, record.r, record.p) if record is not None else (SCRYPT_N, SCRYPT_R, SCRYPT_P)
        got = await self._derive_once(digest, secret, salt, n, r, p)
        if not hmac.compare_digest(got, want) or record is None:
            return False
        while len(self._verified) >= self.cache_max:
            self._verified.popitem(last=False)
        self._verified[digest] = (record.hash, now + self.cache_ttl_s)
        return True

    async def _derive_once(self, digest: bytes, secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        """scrypt of ``secret``, shared with every concurrent check of the same key (one derivation, not one each).

        The derivation runs as its own task, so a requester that gives up (cancelled) does not cancel it for
        the others; a wrong secret has another digest and never shares a derivation with the right one.
        """
        key = (digest, salt, n, r, p)
        task = self._deriving.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._derive(secret, salt, n, r, p))
            self._deriving[key] = task
            task.add_done_callback(lambda done: self._deriving.pop(key) if self._deriving.get(key) is done else None)
        return await asyncio.shield(task)

    async def _derive(self, secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        async with self._scrypt:
            self.derivations += 1
            return await asyncio.to_thread(derive, secret, salt, n, r, p)


def _decode_entry(key_id: str, raw: bytes) -> ApiKeyRecord | None:
    try:
        return ApiKeyRecord.decode(raw)
    except ValueError as exc:
        log.warning("API key record %s is unreadable: %s", key_id, exc)
        return None


def _unchanged(_key_id: str, _record: ApiKeyRecord | None) -> None:
    return None  # checks read the copy itself; the verified-secret cache is checked against the record's hash


__all__ = ["APIKEYS_BUCKET", "ApiKeyError", "ApiKeyRecord", "ApiKeys", "check_new_key", "derive", "parse_key"]
