"""The one redaction boundary: every log line, error message and printed setting passes through here.

Secrets take several shapes in this project: passwords and tokens in URLs (``nats://u:p@h``,
``nats://tok@h``), NKey seeds (``SU...``, ``SA...``, ``SO...``), decentralized-auth JWTs and creds
files, bearer tokens, and ``key=value`` / JSON pairs whose key names a secret. ``redact`` removes all
of them from a string; ``redact_mapping`` walks structured data. Both are pure and cheap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"

# Key names whose values are secret wherever they appear (JSON, YAML, key=value, headers).
SECRET_KEY_PATTERN = re.compile(
    r"(pass(word|wd)?|pwd|secret|token|seed|credential|creds|api[_-]?key|private[_-]?key|authorization|"
    r"auth[_-]?token|bearer|cookie|signature|jwt|nkey)",
    re.IGNORECASE,
)

_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/@\s\"'<>]+)@")
# NKey seeds: 'S' + key-type prefix letter + base32 body (58 chars total). Be generous about length.
_NKEY_SEED = re.compile(r"\bS[UAONCPX][A-Z2-7]{40,}\b")
# Creds-file blocks (JWT and seed), PEM private keys.
_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]*(PRIVATE KEY|SEED|JWT)[A-Z0-9 ]*-----.*?(-----END [A-Z0-9 ]*-----|\Z)",
    re.DOTALL,
)
# Compact JWS/JWT (three base64url segments, header starts with eyJ).
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*")
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/\-]{6,}=*")
# key=value, key: value, "key": "value", key="value" where the key names a secret.
_PAIR = re.compile(
    r"(?P<key>[\"']?[A-Za-z0-9_.\-]*" + SECRET_KEY_PATTERN.pattern + r"[A-Za-z0-9_.\-]*[\"']?)"
    r"(?P<sep>\s*[:=]\s*)"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s,;}&)\]]+)",
    re.IGNORECASE,
)


def _mask_userinfo(match: re.Match[str]) -> str:
    userinfo = match.group("userinfo")
    if ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        return f"{match.group('scheme')}{user}:{MASK}@"
    # A lone userinfo is a token in NATS URLs (nats://token@host): never show it.
    return f"{match.group('scheme')}{MASK}@"


def _mask_pair(match: re.Match[str]) -> str:
    value = match.group("value")
    if value in (MASK, f'"{MASK}"', f"'{MASK}'", "null", "None", '""', "''"):
        return match.group(0)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group('key')}{match.group('sep')}{quote}{MASK}{quote}"


def redact(text: str, known_secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with every secret shape (and every string in ``known_secrets``) masked."""
    if not text:
        return text
    out = text
    for secret in sorted((s for s in known_secrets if s and len(s) >= 3), key=len, reverse=True):
        out = out.replace(secret, MASK)
    out = _BLOCK.sub(MASK, out)
    out = _URL_USERINFO.sub(_mask_userinfo, out)
    out = _JWT.sub(MASK, out)
    out = _NKEY_SEED.sub(MASK, out)
    out = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", out)
    out = _PAIR.sub(_mask_pair, out)
    return out


def is_secret_key(key: str) -> bool:
    """True when a mapping key names a secret (its value must never be shown)."""
    if re.search(r"(_|-)?(file|path|dir)$", key, re.IGNORECASE):
        return False  # a path to a secret is not the secret
    return bool(SECRET_KEY_PATTERN.search(key))


def redact_mapping(value: Any, known_secrets: Iterable[str] = ()) -> Any:
    """Redact structured data: secret-named keys are masked, every string is passed through ``redact``."""
    secrets = tuple(known_secrets)
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and is_secret_key(key) and item not in (None, "", [], {}):
                out[key] = MASK
            else:
                out[key] = redact_mapping(item, secrets)
        return out
    if isinstance(value, list | tuple):
        return [redact_mapping(item, secrets) for item in value]
    if isinstance(value, str):
        return redact(value, secrets)
    return value
