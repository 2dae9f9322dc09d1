"""Unit tests of the one redaction function on nasty inputs."""

from __future__ import annotations

import json

import pytest

from nats_mcp.core.redact import MASK, redact, redact_mapping

SEED = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY"
JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJBQkMifQ.c2lnbmF0dXJlLXZhbHVl"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("connect nats://alice:s3cr%40t@host:4222 failed", "s3cr%40t"),
        ("nats://tok-abcdef123@127.0.0.1:4222", "tok-abcdef123"),
        ("servers=tls://u:p4ss@a:1,tls://u:p4ss@b:2", "p4ss"),
        ("wss://user:pw!x@[::1]:443/path?x=1", "pw!x"),
        (f"seed {SEED} in file", SEED),
        (f"Authorization: Bearer {JWT}", JWT),
        (f"jwt={JWT}", JWT),
        ("password=hunter2 user=bob", "hunter2"),
        ('{"password": "hunter2", "user": "bob"}', "hunter2"),
        ("token: 'abc def'", "abc def"),
        ("NATS_PASS=correct-horse", "correct-horse"),
        ("api_key=k_123456789", "k_123456789"),
        ("-----BEGIN USER NKEY SEED-----\nSUAXYZ\n------END USER NKEY SEED------", "SUAXYZ"),
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----", "MIIEvQIBADANBg"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ],
)
def test_secret_shapes_are_removed(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert MASK in out


def test_known_secrets_are_removed_wherever_they_appear() -> None:
    assert redact("error: plain value zz9-top in text", ["zz9-top"]) == f"error: plain value {MASK} in text"


def test_innocent_text_is_unchanged() -> None:
    for text in [
        "nats://127.0.0.1:4222",
        "connected to tls://nats.example.com:4222 in 12 ms",
        "channel roadmap has 10 messages",
        "tokens are counted per agent",  # word 'token' without a value shape
        "",
    ]:
        assert redact(text) == text


def test_user_name_is_kept_but_password_not() -> None:
    assert redact("nats://alice:pw@h:1") == f"nats://alice:{MASK}@h:1"


def test_mapping_redaction_by_key_and_value() -> None:
    data = {
        "nats": {"url": "nats://u:secretpw@h", "password": "x1", "token": None, "nkey_seed_file": "/run/seed"},
        "headers": [{"Authorization": "Bearer abcdefgh"}],
        "count": 3,
    }
    out = redact_mapping(data)
    text = json.dumps(out)
    assert "secretpw" not in text and "x1" not in text and "abcdefgh" not in text
    assert out["nats"]["nkey_seed_file"] == "/run/seed"  # a path to a secret is not the secret
    assert out["nats"]["token"] is None
    assert out["count"] == 3


def test_redaction_is_idempotent() -> None:
    text = "nats://a:b@h password=zzz"
    assert redact(redact(text)) == redact(text)
