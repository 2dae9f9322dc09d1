"""Boundary of NATS decentralized (operator/account/user JWT) auth made at test time: nkeys, JWTs, creds files."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import nkeys

from tests.support.natsserver import NatsServer

ClaimType = Literal["operator", "account", "user"]

JWT_HEADER: dict[str, str] = {"typ": "JWT", "alg": "ed25519-nkey"}
JWT_VERSION = 2
NO_LIMIT = -1

#: Account limits as nsc writes them for an unlimited account, plus unlimited JetStream. Found against
#: nats-server 2.15: an absent limit is 0 and 0 means *none allowed* for ``conn`` (connect fails with "maximum
#: account active connections exceeded"), ``subs`` and ``payload``, so these must be -1 explicitly. JetStream is
#: enabled for a JWT account iff ``mem_storage`` or ``disk_storage`` is non-zero (jwt ``IsJSEnabled``); without
#: either the JS API answers 503 "JetStream not enabled for account". ``streams``/``consumer`` left at 0 do not
#: block creating streams/consumers, but are set to -1 like nsc does.
UNLIMITED_JETSTREAM_LIMITS: dict[str, Any] = {
    "subs": NO_LIMIT,
    "data": NO_LIMIT,
    "payload": NO_LIMIT,
    "imports": NO_LIMIT,
    "exports": NO_LIMIT,
    "wildcards": True,
    "conn": NO_LIMIT,
    "leaf": NO_LIMIT,
    "mem_storage": NO_LIMIT,
    "disk_storage": NO_LIMIT,
    "streams": NO_LIMIT,
    "consumer": NO_LIMIT,
}

#: The same without the JetStream fields (what nsc gives the system account).
UNLIMITED_CORE_LIMITS: dict[str, Any] = {
    key: value
    for key, value in UNLIMITED_JETSTREAM_LIMITS.items()
    if key not in {"mem_storage", "disk_storage", "streams", "consumer"}
}

_CREDS_NOTICE = """\
************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.
"""

# Go's jwt.ClaimsData field order: the jti is a hash over exactly these fields, in this order, omitempty.
_CLAIMS_DATA_FIELDS = ("aud", "exp", "jti", "iat", "iss", "name", "nbf", "sub")


# --------------------------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True)
class NKeyPair:
    """An nkey (operator "O...", account "A...", user "U..."): its seed ("SO/SA/SU...") and public key."""

    seed: str
    public_key: str

    def sign(self, data: bytes) -> bytes:
        return bytes(nkeys.from_seed(bytearray(self.seed.encode())).sign(data))


def new_nkey(prefix: int) -> NKeyPair:
    """Generate a key pair for ``prefix`` (``nkeys.PREFIX_BYTE_OPERATOR``/``_ACCOUNT``/``_USER``)."""
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    public_key = nkeys.from_seed(bytearray(seed)).public_key
    return NKeyPair(seed=seed.decode(), public_key=public_key.decode())


def new_operator() -> NKeyPair:
    return new_nkey(nkeys.PREFIX_BYTE_OPERATOR)


def new_account() -> NKeyPair:
    return new_nkey(nkeys.PREFIX_BYTE_ACCOUNT)


def new_user() -> NKeyPair:
    return new_nkey(nkeys.PREFIX_BYTE_USER)


# --------------------------------------------------------------------------------------------------------
# JWT encoding


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def claims_id(claims: dict[str, Any]) -> str:
    """The ``jti`` the Go jwt library writes: base32 (no padding) of SHA-512/256 over the JSON of the standard
    claims (Go field order, empty ones omitted, jti itself blank); verified equal to jti of nsc-made tokens.
    nats-server 2.15 does not check it (a bogus or empty jti is accepted), so where OpenSSL lacks SHA-512/256
    we fall back to SHA-256 rather than fail."""
    data = {key: claims[key] for key in _CLAIMS_DATA_FIELDS if key != "jti" and claims.get(key)}
    try:
        digest = hashlib.new("sha512_256", _compact_json(data)).digest()
    except ValueError:  # hashlib only has SHA-512/256 through OpenSSL
        digest = hashlib.sha256(_compact_json(data)).digest()
    return base64.b32encode(digest).rstrip(b"=").decode()


def encode_jwt(
    signer: NKeyPair,
    subject: str,
    claim_type: ClaimType,
    *,
    name: str,
    nats: dict[str, Any] | None = None,
    expires: int | None = None,
    issued_at: int | None = None,
) -> str:
    """Sign a NATS v2 JWT for ``subject`` with ``signer`` (its public key becomes ``iss``).

    ``nats`` is the type-specific body; ``type`` and ``version`` are added. ``expires`` is a Unix time.
    """
    data: dict[str, Any] = {
        "exp": expires,
        "iat": int(time.time()) if issued_at is None else issued_at,
        "iss": signer.public_key,
        "name": name,
        "sub": subject,
    }
    standard = {key: value for key, value in data.items() if value is not None}
    claims: dict[str, Any] = {**standard, "jti": claims_id(standard)}
    claims = {key: claims[key] for key in _CLAIMS_DATA_FIELDS if key in claims}  # Go field order, as nsc
    claims["nats"] = {**(nats or {}), "type": claim_type, "version": JWT_VERSION}
    signing_input = f"{_b64url(_compact_json(JWT_HEADER))}.{_b64url(_compact_json(claims))}"
    return f"{signing_input}.{_b64url(signer.sign(signing_input.encode()))}"


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a JWT, without verifying it."""
    header, claims, _ = token.split(".")
    return json.loads(_b64url_decode(header)), json.loads(_b64url_decode(claims))


def operator_jwt(operator: NKeyPair, *, name: str = "operator", system_account: str | None = None) -> str:
    """Self-signed operator JWT, optionally naming the system account."""
    body: dict[str, Any] = {"system_account": system_account} if system_account else {}
    return encode_jwt(operator, operator.public_key, "operator", name=name, nats=body)


def account_jwt(
    operator: NKeyPair, account: NKeyPair, *, name: str = "account", limits: dict[str, Any] | None = None
) -> str:
    """Account JWT signed by ``operator``; unlimited with JetStream enabled unless ``limits`` says otherwise."""
    body = {"limits": dict(UNLIMITED_JETSTREAM_LIMITS if limits is None else limits), "default_permissions": {}}
    return encode_jwt(operator, account.public_key, "account", name=name, nats=body)


def user_jwt(account: NKeyPair, user: NKeyPair, *, name: str = "user", expires: int | None = None) -> str:
    """User JWT signed by ``account`` with no permission or limit restrictions (``subs``/``data``/``payload`` must
    be -1: absent means 0, and the server then refuses every SUB and every non-empty PUB)."""
    body = {"pub": {}, "sub": {}, "subs": NO_LIMIT, "data": NO_LIMIT, "payload": NO_LIMIT}
    return encode_jwt(account, user.public_key, "user", name=name, nats=body, expires=expires)


# --------------------------------------------------------------------------------------------------------
# Creds files


def format_creds(jwt: str, seed: str) -> str:
    """The standard ``.creds`` text (what ``nsc generate creds`` prints) for a user JWT and its seed."""
    return (
        f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
        f"{_CREDS_NOTICE}\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def write_creds(path: Path, jwt: str, seed: str) -> Path:
    """Write a creds file with mode 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(format_creds(jwt, seed))
    os.chmod(path, 0o600)
    return path


# --------------------------------------------------------------------------------------------------------
# A complete trust chain


@dataclass(frozen=True)
class JwtAuthMaterial:
    """Operator, system account and one JetStream-enabled account with a user, plus creds for negative tests.

    ``untrusted_creds_file``: a user signed by an account the server has never heard of.
    ``expired_creds_file``: a user of the trusted account whose JWT expired an hour ago.
    """

    operator: NKeyPair
    operator_jwt: str
    system_account: NKeyPair
    system_account_jwt: str
    account: NKeyPair
    account_jwt: str
    user: NKeyPair
    user_jwt: str
    creds_file: Path
    untrusted_creds_file: Path
    expired_creds_file: Path

    @property
    def preload(self) -> dict[str, str]:
        """Account public key -> account JWT, for ``resolver_preload``."""
        return {self.system_account.public_key: self.system_account_jwt, self.account.public_key: self.account_jwt}


def make_jwt_auth(directory: Path, *, account_name: str = "APP", user_name: str = "harness") -> JwtAuthMaterial:
    """Create the whole chain in memory and write the three creds files (mode 0600) under ``directory``."""
    operator, system_account, account, user = new_operator(), new_account(), new_account(), new_user()
    op_jwt = operator_jwt(operator, name="harness-operator", system_account=system_account.public_key)
    sys_jwt = account_jwt(operator, system_account, name="SYS", limits=UNLIMITED_CORE_LIMITS)
    acc_jwt = account_jwt(operator, account, name=account_name)
    usr_jwt = user_jwt(account, user, name=user_name)

    stranger_account, stranger = new_account(), new_user()
    stranger_jwt = user_jwt(stranger_account, stranger, name="stranger")
    expired = new_user()
    expired_jwt = user_jwt(account, expired, name="expired", expires=int(time.time()) - 3600)

    return JwtAuthMaterial(
        operator=operator,
        operator_jwt=op_jwt,
        system_account=system_account,
        system_account_jwt=sys_jwt,
        account=account,
        account_jwt=acc_jwt,
        user=user,
        user_jwt=usr_jwt,
        creds_file=write_creds(directory / f"{user_name}.creds", usr_jwt, user.seed),
        untrusted_creds_file=write_creds(directory / "untrusted.creds", stranger_jwt, stranger.seed),
        expired_creds_file=write_creds(directory / "expired.creds", expired_jwt, expired.seed),
    )


# --------------------------------------------------------------------------------------------------------
# Server variant


class JwtNatsServer(NatsServer):
    """Server in operator mode trusting one operator; accounts preloaded into a MEMORY resolver.

    Material is generated into ``base_dir/jwt`` unless given. Clients connect with
    ``nats.connect(url, user_credentials=str(server.creds_file))``. With JetStream on, operator mode needs a
    system account (else FTL "system account not setup"), named by the operator JWT or ``system_account`` (we
    do both, as nsc does), and its JWT must be resolvable at startup (else "error resolving system account:
    account missing"), hence it is preloaded too.
    """

    def __init__(
        self, base_dir: Path | str | None = None, *, material: JwtAuthMaterial | None = None, **kw: Any
    ) -> None:
        super().__init__(base_dir, **kw)
        self.material = material or make_jwt_auth(self.base_dir / "jwt")
        self.creds_file = self.material.creds_file
        self.untrusted_creds_file = self.material.untrusted_creds_file
        self.expired_creds_file = self.material.expired_creds_file
        self.user_public_key = self.material.user.public_key
        self.account_public_key = self.material.account.public_key

    def config_sections(self) -> list[str]:
        preload = "\n".join(f"  {key}: {json.dumps(jwt)}" for key, jwt in self.material.preload.items())
        return [
            f"operator: {json.dumps(self.material.operator_jwt)}",
            f"system_account: {json.dumps(self.material.system_account.public_key)}",
            "resolver: MEMORY",
            f"resolver_preload: {{\n{preload}\n}}",
        ]


def start_nats_jwt(base_dir: Path | str | None = None, **kw: Any) -> JwtNatsServer:
    """Started operator-mode server; ``.creds_file`` (JetStream-enabled user), ``.untrusted_creds_file``,
    ``.expired_creds_file`` (all mode 0600) and ``.user_public_key``."""
    server = JwtNatsServer(base_dir, **kw)
    try:
        return server.start()
    except BaseException:
        server.close()
        raise
