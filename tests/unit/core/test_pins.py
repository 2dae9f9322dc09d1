"""The pin rules of core/pins.py: the one accepted form, what a pin is computed from, and contexts that check them."""

from __future__ import annotations

import base64
import hashlib
import ssl

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nats_mcp.core.pins import (
    PinMismatchError,
    client_context,
    parse_pin,
    parse_pins,
    pin_context,
    pin_error,
    pins_of_pem,
)

GOOD = "sha256/" + base64.b64encode(bytes(range(32))).decode()


def test_the_one_form_is_sha256_slash_base64_of_32_bytes() -> None:
    assert parse_pin(f"  {GOOD} ", "x.pins") == GOOD
    assert parse_pins([GOOD, GOOD], "x.pins") == [GOOD]  # duplicates dropped


@pytest.mark.parametrize(
    "bad",
    [
        "",
        GOOD[len("sha256/") :],  # no prefix
        "SHA256/" + GOOD[len("sha256/") :],
        "sha1/" + base64.b64encode(bytes(20)).decode(),
        "sha256/" + base64.b64encode(bytes(31)).decode(),  # too short
        "sha256/" + bytes(range(32)).hex(),  # hex is not accepted
        GOOD[:-2] + "!=",
    ],
)
def test_malformed_pins_are_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(ValueError, match=r"^nats\.tls\.pins: .* is not a pin"):
        parse_pin(bad, "nats.tls.pins")


def test_a_pin_is_the_sha256_of_the_subject_public_key_info() -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    pem = leaf.cert_chain_pems[0].bytes()
    cert = x509.load_pem_x509_certificate(pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert pins_of_pem(pem) == ["sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()]
    assert len(pins_of_pem(pem + ca.cert_pem.bytes())) == 2  # a bundle: one pin per certificate


def test_pins_never_replace_verification_and_need_https() -> None:
    loose = ssl.create_default_context()
    loose.check_hostname = False
    loose.verify_mode = ssl.CERT_NONE
    with pytest.raises(ValueError, match="verification"):
        pin_context(loose, [GOOD], "x.pins")
    with pytest.raises(ValueError, match="https://"):
        client_context(None, [GOOD], "x.pins", "http://127.0.0.1:1/jwks")
    assert client_context(None, [], "x.pins", "https://idp.test/jwks") is None  # nothing set: the default


def test_the_refusal_is_found_behind_wrappers() -> None:
    refusal = PinMismatchError("x.pins", ["sha256/seen"], "host")
    assert "x.pins" in str(refusal) and "sha256/seen" in str(refusal) and "host" in str(refusal)
    outer = ConnectionError("wrapped")
    outer.__cause__ = OSError("in between")
    outer.__cause__.__context__ = refusal
    assert pin_error(outer) is refusal
    assert pin_error(OSError("no")) is None
