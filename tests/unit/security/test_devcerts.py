"""Development certificates as `nats-mcp certs init` makes them: chains that verify (cryptography's RFC 5280 verifier),
the right SANs, EKUs, SPIFFE IDs and validity, private files, no overwriting, no half-written sets, refused input."""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from nats_mcp.security.dev import certs as devcerts
from nats_mcp.security.dev.certs import DevCertBundle, DevCertError, DevCertSpec
from nats_mcp.security.dev.certs import files as certfiles
from nats_mcp.security.policy import Policy, parse_policy
from nats_mcp.security.principal import Principal

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)


def files(bundle: DevCertBundle) -> dict[str, bytes]:
    return {f.relpath: f.data for f in bundle.files}


def cert(bundle: DevCertBundle, rel: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(files(bundle)[rel])


def key(bundle: DevCertBundle, rel: str) -> Any:
    return serialization.load_pem_private_key(files(bundle)[rel], password=None)


def store(bundle: DevCertBundle, at: datetime.datetime = NOW) -> PolicyBuilder:
    return PolicyBuilder().store(Store([cert(bundle, devcerts.CA_CERT)])).time(at)


@pytest.fixture(scope="module")
def spec() -> DevCertSpec:
    return devcerts.make_spec(
        server_names=["Grpc.Example.test", "localhost"], server_ips=["10.1.2.3", "fd00::7"], clients=["agent-1", "ci"]
    )


@pytest.fixture(scope="module")
def bundle(spec: DevCertSpec) -> DevCertBundle:
    return devcerts.issue(spec, now=NOW)


def test_defaults() -> None:
    spec = devcerts.make_spec()
    assert spec.dns_names == ("localhost",)
    assert spec.ips == (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
    assert spec.clients == ("agent-1",)
    assert spec.trust_domain == "nats-mcp.dev" and spec.days == 30
    assert spec.client_identity("agent-1") == "spiffe://nats-mcp.dev/agent/agent-1"
    assert spec.principal_pattern == "spiffe://nats-mcp.dev/agent/*"


def test_layout_and_key_material(bundle: DevCertBundle, spec: DevCertSpec) -> None:
    assert [f.relpath for f in bundle.files] == list(devcerts.layout(spec))
    assert set(files(bundle)) == {
        "ca.pem",
        "ca-key.pem",
        "server.pem",
        "server-key.pem",
        "README.txt",
        "policy.yaml",
        "clients/agent-1.pem",
        "clients/agent-1-key.pem",
        "clients/ci.pem",
        "clients/ci-key.pem",
    }
    assert {f.relpath for f in bundle.files if f.private} == {
        "ca-key.pem",
        "server-key.pem",
        "clients/agent-1-key.pem",
        "clients/ci-key.pem",
    }
    for cert_rel, key_rel in [
        ("ca.pem", "ca-key.pem"),
        ("server.pem", "server-key.pem"),
        ("clients/ci.pem", "clients/ci-key.pem"),
    ]:
        private = key(bundle, key_rel)
        assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp256r1"
        assert private.public_key() == cert(bundle, cert_rel).public_key()
        assert files(bundle)[key_rel].startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted


def test_ca_is_labelled_for_development(bundle: DevCertBundle) -> None:
    ca = cert(bundle, devcerts.CA_CERT)
    cn = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert "development" in str(cn) and "NOT FOR PRODUCTION" in str(cn)
    assert ca.subject == ca.issuer
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    readme = files(bundle)[devcerts.README].decode()
    assert "NOT FOR PRODUCTION" in readme and bundle.ca_fingerprint in readme
    assert "--tls-cert server.pem --tls-key server-key.pem --client-ca ca.pem" in readme
    assert "--ca ca.pem --cert clients/agent-1.pem --key clients/agent-1-key.pem" in readme
    assert 'subject: "spiffe://nats-mcp.dev/agent/*"' in readme
    for leaf in ("server.pem", "clients/ci.pem"):
        org = cert(bundle, leaf).subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        assert "NOT FOR PRODUCTION" in str(org)


def test_server_certificate_verifies_for_every_name(bundle: DevCertBundle) -> None:
    server = cert(bundle, devcerts.SERVER_CERT)
    for name in ("localhost", "grpc.example.test"):
        chain = store(bundle).build_server_verifier(x509.DNSName(name)).verify(server, [])
        assert chain[-1] == cert(bundle, devcerts.CA_CERT)
    for ip in ("127.0.0.1", "::1", "10.1.2.3", "fd00::7"):
        store(bundle).build_server_verifier(x509.IPAddress(ipaddress.ip_address(ip))).verify(server, [])
    with pytest.raises(VerificationError):
        store(bundle).build_server_verifier(x509.DNSName("other.example.test")).verify(server, [])
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "grpc.example.test"]  # lowercased, deduplicated
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1", "10.1.2.3", "fd00::7"]
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == []
    assert server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_client_certificates_carry_spiffe_ids_and_verify(bundle: DevCertBundle) -> None:
    for name in ("agent-1", "ci"):
        client = cert(bundle, f"clients/{name}.pem")
        verified = store(bundle).build_client_verifier().verify(client, [])
        assert verified.chain[-1] == cert(bundle, devcerts.CA_CERT)
        uris = [u for u in verified.subjects or [] if isinstance(u, x509.UniformResourceIdentifier)]
        assert [u.value for u in uris] == [f"spiffe://nats-mcp.dev/agent/{name}"]
        assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        assert client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        with pytest.raises(VerificationError):  # a client certificate is no server certificate
            store(bundle).build_server_verifier(x509.DNSName("localhost")).verify(client, [])
    with pytest.raises(VerificationError):  # and the server's is no client certificate
        store(bundle).build_client_verifier().verify(cert(bundle, devcerts.SERVER_CERT), [])


def test_another_ca_does_not_verify(bundle: DevCertBundle) -> None:
    other = devcerts.issue(devcerts.make_spec(), now=NOW)
    with pytest.raises(VerificationError):
        store(other).build_client_verifier().verify(cert(bundle, "clients/agent-1.pem"), [])
    with pytest.raises(VerificationError):
        store(other).build_server_verifier(x509.DNSName("localhost")).verify(cert(bundle, devcerts.SERVER_CERT), [])


def test_validity_window(bundle: DevCertBundle) -> None:
    days = devcerts.make_spec(days=825)
    long = devcerts.issue(days, now=NOW)
    for b, n in ((bundle, 30), (long, 825)):
        for rel in ("ca.pem", "server.pem", "clients/agent-1.pem"):
            c = cert(b, rel)
            assert c.not_valid_before_utc == NOW - datetime.timedelta(minutes=5)  # a little clock skew is tolerated
            assert c.not_valid_after_utc == NOW + datetime.timedelta(days=n)
        assert b.not_after == NOW + datetime.timedelta(days=n)
    server = cert(bundle, devcerts.SERVER_CERT)
    store(bundle, NOW + datetime.timedelta(days=29)).build_server_verifier(x509.DNSName("localhost")).verify(server, [])
    for outside in (NOW + datetime.timedelta(days=30, seconds=1), NOW - datetime.timedelta(hours=1)):
        with pytest.raises(VerificationError):
            store(bundle, outside).build_server_verifier(x509.DNSName("localhost")).verify(server, [])


def test_serials_and_keys_are_fresh_each_time(spec: DevCertSpec) -> None:
    a, b = devcerts.issue(spec, now=NOW), devcerts.issue(spec, now=NOW)
    assert cert(a, "ca.pem").serial_number != cert(b, "ca.pem").serial_number
    assert files(a)["ca-key.pem"] != files(b)["ca-key.pem"]
    assert a.ca_fingerprint != b.ca_fingerprint


# ---------------------------------------------------------------------------------------------------------------
# Writing


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_written_files_and_modes(tmp_path: Path, bundle: DevCertBundle, spec: DevCertSpec) -> None:
    target = tmp_path / "a" / "certs"
    written = devcerts.write_bundle(target, bundle)
    assert written == [target / rel for rel in devcerts.layout(spec)]
    assert mode(target) == 0o700 and mode(target / "clients") == 0o700
    for f in bundle.files:
        assert (target / f.relpath).read_bytes() == f.data
        assert mode(target / f.relpath) == (0o600 if f.private else 0o644), f.relpath
    assert sorted(p.name for p in target.iterdir()) == [
        "README.txt",
        "ca-key.pem",
        "ca.pem",
        "clients",
        "policy.yaml",
        "server-key.pem",
        "server.pem",
    ]  # no staging directory left behind


def test_keys_are_private_whatever_the_umask(tmp_path: Path, bundle: DevCertBundle) -> None:
    old = os.umask(0)
    try:
        devcerts.write_bundle(tmp_path / "d", bundle)
    finally:
        os.umask(old)
    assert mode(tmp_path / "d" / "ca-key.pem") == 0o600 and mode(tmp_path / "d" / "clients" / "ci-key.pem") == 0o600
    assert mode(tmp_path / "d") == 0o700


def test_existing_directory_keeps_its_mode_and_other_files(tmp_path: Path, bundle: DevCertBundle) -> None:
    tmp_path.joinpath("notes.txt").write_text("mine")
    os.chmod(tmp_path, 0o750)  # noqa: S103  (a directory the user made, not ours: left as it is)
    devcerts.write_bundle(tmp_path, bundle)
    assert mode(tmp_path) == 0o750 and tmp_path.joinpath("notes.txt").read_text() == "mine"


def test_refuses_to_overwrite_and_writes_nothing(tmp_path: Path, bundle: DevCertBundle, spec: DevCertSpec) -> None:
    (tmp_path / "clients").mkdir()
    (tmp_path / "clients" / "ci-key.pem").write_text("precious")
    with pytest.raises(DevCertError, match=r"clients/ci-key\.pem.*--force"):
        devcerts.write_bundle(tmp_path, bundle)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["clients", "clients/ci-key.pem"]
    assert (tmp_path / "clients" / "ci-key.pem").read_text() == "precious"

    dangling = tmp_path / "elsewhere"
    (tmp_path / "clients" / "ci-key.pem").unlink()
    (tmp_path / "ca.pem").symlink_to(dangling)  # even a dangling symlink is "there": never written through
    assert devcerts.conflicts(tmp_path, spec) == [tmp_path / "ca.pem"]
    with pytest.raises(DevCertError, match=r"ca\.pem"):
        devcerts.write_bundle(tmp_path, bundle)
    assert not dangling.exists()


def test_force_replaces_and_reports_stale_clients(tmp_path: Path, bundle: DevCertBundle) -> None:
    devcerts.write_bundle(tmp_path, bundle)
    fresh = devcerts.issue(devcerts.make_spec(clients=["ci"]), now=NOW)
    with pytest.raises(DevCertError):
        devcerts.write_bundle(tmp_path, fresh)
    assert (tmp_path / "ca.pem").read_bytes() == files(bundle)["ca.pem"]
    devcerts.write_bundle(tmp_path, fresh, force=True)
    assert (tmp_path / "ca.pem").read_bytes() == files(fresh)["ca.pem"]
    assert (tmp_path / "clients" / "ci.pem").read_bytes() == files(fresh)["clients/ci.pem"]
    assert mode(tmp_path / "ca-key.pem") == 0o600
    assert devcerts.stale_client_files(tmp_path, fresh.spec) == [tmp_path / "clients" / "agent-1.pem"]


def test_a_failure_midway_leaves_nothing(
    tmp_path: Path, bundle: DevCertBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = certfiles._place
    calls = []

    def flaky(staged: Path, target: Path, force: bool) -> None:
        calls.append(target)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        real(staged, target, force)

    monkeypatch.setattr(certfiles, "_place", flaky)
    target = tmp_path / "new" / "certs"
    with pytest.raises(OSError, match="No space"):
        devcerts.write_bundle(target, bundle)
    assert len(calls) == 4
    assert list(tmp_path.iterdir()) == []  # the directories it made are gone too


def test_a_file_appearing_while_writing_is_not_replaced(
    tmp_path: Path, bundle: DevCertBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(certfiles, "conflicts", lambda directory, spec: [])  # the check ran before the file appeared
    (tmp_path / "server.pem").write_text("someone else's")
    with pytest.raises(DevCertError, match="appeared while writing"):
        devcerts.write_bundle(tmp_path, bundle)
    assert (tmp_path / "server.pem").read_text() == "someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["server.pem"]  # and clients/, which this call had made, is gone


def test_directory_that_is_a_file(tmp_path: Path, bundle: DevCertBundle) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(DevCertError, match="not a directory"):
        devcerts.write_bundle(tmp_path / "f", bundle)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "clients").write_text("x")
    with pytest.raises(DevCertError, match="not a directory"):
        devcerts.write_bundle(tmp_path / "d", bundle)
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["clients"]


# ---------------------------------------------------------------------------------------------------------------
# Refused input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clients": ["Agent"]}, "invalid client name 'Agent'"),
        ({"clients": ["a_b"]}, "invalid client name"),
        ({"clients": ["-a"]}, "invalid client name"),
        ({"clients": ["a/../b"]}, "invalid client name"),
        ({"clients": ["x" * 64]}, "invalid client name"),
        ({"clients": [""]}, "invalid client name"),
        ({"clients": ["a", "a"]}, "given twice"),
        ({"clients": [f"c{i}" for i in range(101)]}, "at most 100"),
        ({"server_names": ["bad_name.test"]}, "not a host name"),
        ({"server_names": ["-x.test"]}, "not a host name"),
        ({"server_names": ["a..b"]}, "not a host name"),
        ({"server_names": ["host.test."]}, "no trailing dot"),
        ({"server_names": ["has space"]}, "not a host name"),
        ({"server_names": [""]}, "empty"),
        ({"server_names": ["*.example.test"]}, "wildcards"),
        ({"server_names": ["bücher.test"]}, "xn--"),
        ({"server_names": ["10.0.0.1"]}, "--server-ip"),
        ({"server_names": [("a" * 60 + ".") * 5 + "test"]}, "253"),
        ({"server_ips": ["300.1.1.1"]}, "not an IPv4 or IPv6 address"),
        ({"server_ips": ["localhost"]}, "not an IPv4 or IPv6 address"),
        ({"server_ips": ["10.0.0.0/8"]}, "not an IPv4 or IPv6 address"),
        ({"server_ips": ["fe80::1%eth0"]}, "zone index"),
        ({"trust_domain": "Example.org"}, "--trust-domain"),
        ({"trust_domain": "spiffe://example.org"}, "--trust-domain"),
        ({"trust_domain": "example.org/agent"}, "--trust-domain"),
        ({"trust_domain": "a..b"}, "--trust-domain"),
        ({"trust_domain": ""}, "--trust-domain"),
        ({"days": 0}, "between 1 and 825"),
        ({"days": 826}, "between 1 and 825"),
        ({"days": -5}, "between 1 and 825"),
    ],
)
def test_bad_input_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(DevCertError, match=message.replace(".", r"\.").replace("*", r"\*")):
        devcerts.make_spec(**kwargs)


def test_good_input_is_normalised() -> None:
    spec = devcerts.make_spec(
        server_names=["API.Example.TEST", "api.example.test", "localhost", "xn--bcher-kva.test", "a-1.b2"],
        server_ips=["10.0.0.1", "10.0.0.1", "127.0.0.1", "2001:DB8::1"],
        clients=["0agent", "a" * 63],
        trust_domain="corp_dev.example-1.org",
        days=1,
    )
    assert spec.dns_names == ("localhost", "api.example.test", "xn--bcher-kva.test", "a-1.b2")
    assert [str(i) for i in spec.ips] == ["127.0.0.1", "::1", "10.0.0.1", "2001:db8::1"]
    assert spec.client_identity("0agent") == "spiffe://corp_dev.example-1.org/agent/0agent"
    bundle = devcerts.issue(spec, now=NOW)
    store(bundle).build_client_verifier().verify(cert(bundle, f"clients/{'a' * 63}.pem"), [])


def test_the_development_policy_makes_the_set_s_clients_agents_and_nobody_else(
    bundle: DevCertBundle, spec: DevCertSpec
) -> None:
    policy = Policy(parse_policy(files(bundle)[devcerts.POLICY].decode()))
    ours = Principal(subject=spec.client_identity("ci"), issuer="mtls", method="mtls")
    assert [r.tools for r in policy.roles_of(ours)] == [["*"]]
    assert policy.tool_allowed(ours, "work_claim", ())
    for stranger in (
        Principal(subject="spiffe://elsewhere.test/agent/ci", issuer="mtls", method="mtls"),
        Principal(subject=spec.client_identity("ci"), issuer="https://idp.example", method="jwt"),
    ):
        assert policy.roles_of(stranger) == [] and not policy.tool_allowed(stranger, "channels_list", ())
