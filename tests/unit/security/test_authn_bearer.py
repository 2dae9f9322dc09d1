"""The one classification of a presented credential string: API key, JWT, opaque token or nothing."""

from __future__ import annotations

import pytest

from nats_mcp.security.authn import Credentials
from nats_mcp.security.authn.apikeys import KEY_PATTERN, KEY_PREFIX
from nats_mcp.security.authn.bearer import classify, credential_kind, credentials_for

KEY = KEY_PREFIX + "0123456789ab_" + "A" * 43


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (KEY, "api_key"),
        (KEY_PREFIX + "xyz", "api_key"),  # malformed, but a key: the key store refuses it as malformed
        (KEY_PREFIX, "api_key"),
        ("nmx_0123456789ab_" + "A" * 43, "opaque"),  # wrong prefix: never a key
        (KEY.upper(), "opaque"),  # the prefix is case-sensitive, as the key pattern is
        ("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln", "jwt"),
        ("a.b.c", "jwt"),  # JWT-shaped garbage: classified by shape, refused by the verifier
        ("a.b", "opaque"),
        ("a.b.c.d", "opaque"),
        ("opaque-token-123", "opaque"),
        ("", "none"),
        (None, "none"),
    ],
)
def test_classify(value: str | None, kind: str) -> None:
    assert classify(value) == kind


def test_the_prefix_is_the_key_patterns_own() -> None:
    assert KEY_PATTERN.match(KEY)
    assert KEY_PATTERN.pattern.startswith("^" + KEY_PREFIX)


def test_credentials_for_puts_keys_in_api_key_and_anything_else_in_bearer() -> None:
    key = credentials_for(KEY, peer="10.0.0.1", agent="bot")
    assert (key.api_key, key.bearer, key.peer, key.agent) == (KEY, None, "10.0.0.1", "bot")
    malformed = credentials_for(KEY_PREFIX + "nope")
    assert (malformed.api_key, malformed.bearer) == (KEY_PREFIX + "nope", None)
    for other in ("a.b.c", "opaque", "nmx_" + "0" * 12):
        token = credentials_for(other)
        assert (token.api_key, token.bearer) == (None, other)


@pytest.mark.parametrize(
    ("credentials", "label"),
    [
        (Credentials(api_key=KEY), "api_key"),
        (Credentials(bearer=KEY), "api_key"),  # an API key may come as a bearer
        (Credentials(bearer="a.b.c"), "jwt"),
        (Credentials(bearer="opaque"), "bearer"),
        (Credentials(bearer=""), "none"),
        (Credentials(bearer="", peer_cert={"subject": ()}), "mtls"),
        (Credentials(peer_cert={"subject": ()}), "mtls"),
        (Credentials(bearer="a.b.c", peer_cert={"subject": ()}), "jwt"),  # the bearer decides, as in the chain
        (Credentials(), "none"),
    ],
)
def test_credential_kind_labels(credentials: Credentials, label: str) -> None:
    assert credential_kind(credentials) == label
