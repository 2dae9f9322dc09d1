"""`nats-mcp certs init` as a user runs it: files, modes and JSON; exit 2 with nothing written for bad input or an
existing set; and the certificates in real use: a mutual-TLS handshake on loopback (Python's ssl, OpenSSL) whose
server side reads the SPIFFE ID the mTLS authenticator maps to a principal, a client of another `certs init` CA
refused, and nats-server (Go's TLS) accepting the same server and client certificates."""

from __future__ import annotations

import json
import socket
import ssl
import stat
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nats_mcp.bus.connection import connect_once
from nats_mcp.bus.connplan import plan_connection
from nats_mcp.bus.errors import NatsConnectError
from nats_mcp.core.pins import pins_of_file
from nats_mcp.security.authn import Credentials
from nats_mcp.security.authn.mtls import MtlsAuthenticator, cert_identity
from tests.support.certs import CertFiles, TlsMaterial
from tests.support.env import isolated_env, nats_mcp_exe, settings_for
from tests.support.grpc_server import Leaf, bridged, serving
from tests.support.natsserver import NatsServer, TlsNatsServer
from tests.support.work_tools import register


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nats_mcp_exe(), *args],
        env=isolated_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def init(tmp_path: Path, name: str, *args: str) -> dict[str, Any]:
    done = cli(tmp_path, "certs", "init", name, "--json", *args)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_the_set(tmp_path: Path) -> None:
    data = init(
        tmp_path,
        "certs",
        "--client",
        "agent-1",
        "--client",
        "ci",
        "--server-name",
        "mcp.example.test",
        "--server-ip",
        "10.9.8.7",
        "--trust-domain",
        "example.org",
        "--days",
        "7",
    )
    d = tmp_path / "certs"
    assert data["directory"] == str(d) and data["development_only"] is True
    assert "NOT FOR PRODUCTION" in data["warning"] and "NOT FOR PRODUCTION" in data["ca"]["subject_cn"]
    assert data["trust_domain"] == "example.org"
    assert data["ca"] | {"sha256": None} == {
        "cert": str(d / "ca.pem"),
        "key": str(d / "ca-key.pem"),
        "subject_cn": data["ca"]["subject_cn"],
        "sha256": None,
        "pin": pins_of_file(d / "ca.pem")[0],
    }
    assert data["server"] == {
        "cert": str(d / "server.pem"),
        "key": str(d / "server-key.pem"),
        "dns_names": ["localhost", "mcp.example.test"],
        "ip_addresses": ["127.0.0.1", "::1", "10.9.8.7"],
        "pin": pins_of_file(d / "server.pem")[0],
    }
    assert data["clients"] == [
        {
            "name": n,
            "cert": str(d / f"clients/{n}.pem"),
            "key": str(d / f"clients/{n}-key.pem"),
            "identity": f"spiffe://example.org/agent/{n}",
        }
        for n in ("agent-1", "ci")
    ]
    assert data["policy_principal"] == {"method": "mtls", "subject": "spiffe://example.org/agent/*", "roles": ["agent"]}
    assert data["stale_client_certs"] == []
    assert sorted(tree(d)) == [
        "README.txt",
        "ca-key.pem",
        "ca.pem",
        "clients/agent-1-key.pem",
        "clients/agent-1.pem",
        "clients/ci-key.pem",
        "clients/ci.pem",
        "policy.yaml",
        "server-key.pem",
        "server.pem",
    ]
    assert data["policy"] == str(d / "policy.yaml") and mode(d / "policy.yaml") == 0o644
    assert mode(d) == 0o700 and mode(d / "clients") == 0o700
    for key in (data["ca"]["key"], data["server"]["key"], *(c["key"] for c in data["clients"])):
        assert mode(Path(key)) == 0o600
    assert data["ca"]["sha256"] in (d / "README.txt").read_text()


def test_text_output_says_development_and_how_to_use_it(tmp_path: Path) -> None:
    done = cli(tmp_path, "certs", "init", "my certs")
    assert done.returncode == 0, done.stderr
    d = tmp_path / "my certs"
    out = " ".join(done.stdout.split())  # whatever the terminal width folded
    assert "NOT FOR PRODUCTION" in out
    assert f"--tls-cert '{d}/server.pem' --tls-key '{d}/server-key.pem' --client-ca '{d}/ca.pem'" in out
    ca_pin = pins_of_file(d / "ca.pem")[0]
    assert (
        f"--ca '{d}/ca.pem' --cert '{d}/clients/agent-1.pem' --key '{d}/clients/agent-1-key.pem' --pin {ca_pin}" in out
    )
    assert f"pins CA {ca_pin} server {pins_of_file(d / 'server.pem')[0]}" in out
    assert "spiffe://nats-mcp.dev/agent/agent-1" in out
    assert 'principals: [{method: mtls, subject: "spiffe://nats-mcp.dev/agent/*", roles: [agent]}]' in out
    assert f"NATS_MCP_SECURITY_POLICY_FILE='{d}/policy.yaml' nats-mcp serve --transport grpc" in out
    assert "BEGIN" not in done.stdout + done.stderr  # no key material printed


def test_existing_set_is_not_overwritten_without_force(tmp_path: Path) -> None:
    first = init(tmp_path, "certs")
    before = tree(tmp_path / "certs")
    again = cli(tmp_path, "certs", "init", "certs")
    assert again.returncode == 2 and again.stdout == ""
    assert "already holds" in again.stderr and "--force" in again.stderr
    assert tree(tmp_path / "certs") == before
    replaced = init(tmp_path, "certs", "--force", "--client", "ci")
    assert replaced["ca"]["sha256"] != first["ca"]["sha256"]
    assert (tmp_path / "certs" / "ca.pem").read_bytes() != before["ca.pem"]
    assert replaced["stale_client_certs"] == [str(tmp_path / "certs" / "clients" / "agent-1.pem")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--client", "Agent_1"], "invalid client name 'Agent_1'"),
        (["--client", "a", "--client", "a"], "given twice"),
        (["--server-name", "bad_host"], "not a host name"),
        (["--server-name", "10.0.0.1"], "--server-ip"),
        (["--server-ip", "1.2.3.256"], "not an IPv4 or IPv6 address"),
        (["--trust-domain", "Example.ORG"], "--trust-domain"),
        (["--days", "0"], "between 1 and 825"),
        (["--days", "826"], "between 1 and 825"),
        (["--days", "many"], "'--days'"),  # typer's own check
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    done = cli(tmp_path, "certs", "init", "certs", "--json", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and done.stdout == ""
    assert not (tmp_path / "certs").exists()


def test_directory_that_is_a_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "certs").write_text("x")
    done = cli(tmp_path, "certs", "init", "certs")
    assert done.returncode == 2 and "not a directory" in done.stderr


# ---------------------------------------------------------------------------------------------------------------
# The certificates in use


@dataclass
class Outcome:
    peercert: dict[str, Any] | None = None
    server_error: BaseException | None = None
    client_error: BaseException | None = None
    reply: bytes = b""


def handshake(
    server: dict[str, Any],
    client_ca: str,
    client: dict[str, Any] | None,
    *,
    host: str = "127.0.0.1",
    server_hostname: str = "localhost",
    trust: str | None = None,
) -> Outcome:
    """One TLS connection on loopback (port 0) between a server requiring client certificates and a client."""
    outcome = Outcome()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    server_ctx.load_cert_chain(server["cert"], server["key"])
    server_ctx.load_verify_locations(client_ca)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.bind((host, 0))
    listener.listen(1)
    listener.settimeout(10)
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(10)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                outcome.peercert = tls.getpeercert()
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            outcome.server_error = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=trust or client_ca)
    if client is not None:
        client_ctx.load_cert_chain(client["cert"], client["key"])
    try:
        with (
            socket.create_connection((host, port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
        ):
            outcome.reply = tls.recv(16)
    except (ssl.SSLError, OSError) as exc:
        outcome.client_error = exc
    finally:
        thread.join(10)
        listener.close()
    assert not thread.is_alive()
    return outcome


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_mutual_tls_handshake_yields_the_spiffe_identity(tmp_path: Path) -> None:
    certs = init(tmp_path, "certs", "--client", "agent-1", "--client", "ci")
    ca = certs["ca"]["cert"]
    targets = [("127.0.0.1", "localhost"), ("127.0.0.1", "127.0.0.1")]
    if ipv6_loopback():
        targets.append(("::1", "::1"))
    for client in certs["clients"]:
        for host, server_hostname in targets:
            outcome = handshake(certs["server"], ca, client, host=host, server_hostname=server_hostname)
            assert outcome.server_error is None and outcome.client_error is None, outcome
            assert outcome.reply == b"ok"
            peercert = outcome.peercert
            assert peercert and ("URI", client["identity"]) in peercert["subjectAltName"]
            assert cert_identity(peercert) == (client["identity"], "spiffe")
            principal = await MtlsAuthenticator().authenticate(Credentials(peer_cert=peercert, peer=host))
            assert principal.subject == principal.cert_identity == f"spiffe://nats-mcp.dev/agent/{client['name']}"
            assert principal.method == "mtls"


def test_client_of_another_ca_or_none_is_refused(tmp_path: Path) -> None:
    ours = init(tmp_path, "ours")
    other = init(tmp_path, "other")
    ca = ours["ca"]["cert"]

    foreign = handshake(ours["server"], ca, other["clients"][0])
    assert foreign.peercert is None and foreign.reply == b""
    assert isinstance(foreign.server_error, ssl.SSLError) and "certificate verify failed" in str(foreign.server_error)

    anonymous = handshake(ours["server"], ca, None)
    assert anonymous.peercert is None and anonymous.reply == b""
    assert isinstance(anonymous.server_error, ssl.SSLError)

    # and a client trusting only the other CA refuses our server
    untrusted = handshake(ours["server"], ca, other["clients"][0], trust=other["ca"]["cert"])
    assert isinstance(untrusted.client_error, ssl.SSLCertVerificationError) and untrusted.peercert is None

    # a client certificate cannot serve, nor the server's act as a client
    wrong_role = handshake(
        {"cert": ours["clients"][0]["cert"], "key": ours["clients"][0]["key"]}, ca, ours["clients"][0]
    )
    assert isinstance(wrong_role.client_error, ssl.SSLCertVerificationError)
    wrong_role = handshake(ours["server"], ca, {"cert": ours["server"]["cert"], "key": ours["server"]["key"]})
    assert wrong_role.peercert is None and isinstance(wrong_role.server_error, ssl.SSLError)


def files(certs: dict[str, Any], part: dict[str, Any]) -> CertFiles:
    return CertFiles(ca_file=Path(certs["ca"]["cert"]), cert_file=Path(part["cert"]), key_file=Path(part["key"]))


async def test_nats_server_accepts_them(tmp_path: Path) -> None:
    ours = init(tmp_path, "ours")
    other = init(tmp_path, "other")
    material = TlsMaterial(
        ca_file=Path(ours["ca"]["cert"]),
        server=files(ours, ours["server"]),
        client=files(ours, ours["clients"][0]),
        untrusted_ca_file=Path(other["ca"]["cert"]),
        untrusted_client=files(other, other["clients"][0]),
    )
    with TlsNatsServer(tmp_path / "nats", material=material, verify=True).start() as server:

        def env(client: CertFiles) -> dict[str, str]:
            return {
                "NATS_URL": server.tls_url,
                "NATS_MCP_NATS_TLS_CA_FILE": str(material.ca_file),
                "NATS_MCP_NATS_TLS_CERT_FILE": str(client.cert_file),
                "NATS_MCP_NATS_TLS_KEY_FILE": str(client.key_file),
            }

        nc = await connect_once(plan_connection(settings_for(tmp_path, **env(material.client))))
        try:
            assert nc.is_connected
            await nc.flush(timeout=5)
        finally:
            await nc.close()
        with pytest.raises(NatsConnectError) as info:
            nc = await connect_once(plan_connection(settings_for(tmp_path, **env(material.untrusted_client))))
            await nc.close()
        assert info.value.kind == "tls"


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
async def test_the_printed_grpc_commands_work_as_printed(tmp_path: Path, nats_server: NatsServer) -> None:
    """certs init, then serve with its development policy, then the bridge as agent-1: an agent over mTLS."""
    data = init(tmp_path, "quick")
    ca = Path(data["ca"]["cert"])
    server = Leaf(ca, Path(data["server"]["cert"]), Path(data["server"]["key"]))
    client = Leaf(ca, Path(data["clients"][0]["cert"]), Path(data["clients"][0]["key"]))
    env = {"NATS_MCP_SECURITY_POLICY_FILE": data["policy"], "NATS_MCP_NAMESPACE": "team-quick"}
    async with (
        serving(tmp_path, "quick", nats_server.url, server, "--client-ca", str(ca), **env) as srv,
        bridged(tmp_path, srv, client, "--pin", data["ca"]["pin"]) as agent,  # pinned as printed
    ):
        assert len(await register(agent, "python")) == 32
