"""`nats-mcp certs`: the command-line boundary of development certificates (a CA, server and client certificates)."""

from __future__ import annotations

import datetime
import os
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from nats_mcp.cli.common import EXIT_USAGE, fail, out, print_json
from nats_mcp.core.pins import pins_of_pem
from nats_mcp.security.dev import certs as devcerts
from nats_mcp.security.dev.certs import DevCertError

app = typer.Typer(
    help="Development certificates for mTLS (gRPC transport): a CA, a server and clients.", no_args_is_help=True
)


def _when(ts: datetime.datetime) -> str:
    return f"{ts:%Y-%m-%d %H:%M}Z"


@app.command("init")
def init(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Where to write them (created with mode 0700 if missing).")
    ],
    server_name: Annotated[
        list[str] | None,
        typer.Option("--server-name", metavar="NAME", help="Another DNS name for the server (besides localhost)."),
    ] = None,
    server_ip: Annotated[
        list[str] | None,
        typer.Option("--server-ip", metavar="IP", help="Another IP address for the server (besides 127.0.0.1, ::1)."),
    ] = None,
    client: Annotated[
        list[str] | None,
        typer.Option(
            "--client",
            metavar="NAME",
            help=f"A client certificate to make (repeat for several; default {devcerts.DEFAULT_CLIENT}).",
        ),
    ] = None,
    trust_domain: Annotated[
        str, typer.Option("--trust-domain", metavar="DOMAIN", help="SPIFFE trust domain of the client identities.")
    ] = devcerts.DEFAULT_TRUST_DOMAIN,
    days: Annotated[
        int, typer.Option("--days", metavar="N", help=f"Validity in days (1-{devcerts.MAX_DAYS}).")
    ] = devcerts.DEFAULT_DAYS,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace existing files of the set (a new CA: old certificates stop working)"),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Make a development CA, a server certificate (localhost) and client certificates with SPIFFE identities
    (spiffe://DOMAIN/agent/NAME) for the gRPC transport's mutual TLS. For trying things on one machine only: the CA
    key is written unprotected next to the certificates. Existing files are never replaced without --force."""
    try:
        spec = devcerts.make_spec(
            server_names=server_name or (),
            server_ips=server_ip or (),
            clients=client or (),
            trust_domain=trust_domain,
            days=days,
        )
    except DevCertError as exc:
        fail(str(exc), code=EXIT_USAGE)
    target = Path(os.path.abspath(directory))
    try:
        bundle = devcerts.issue(spec)
        devcerts.write_bundle(target, bundle, force=force)
    except DevCertError as exc:
        fail(str(exc), code=EXIT_USAGE)
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror or exc}")
    stale = devcerts.stale_client_files(target, spec)
    # SPKI pins (core/pins.py) of what was made: the CA's survives a reissued server certificate, the server's does not.
    made = {f.relpath: f.data for f in bundle.files}
    ca_pin, server_pin = pins_of_pem(made[devcerts.CA_CERT])[0], pins_of_pem(made[devcerts.SERVER_CERT])[0]

    def at(rel: str) -> str:
        return str(target / rel)

    clients = [
        {
            "name": name,
            "cert": at(devcerts.client_cert_path(name)),
            "key": at(devcerts.client_key_path(name)),
            "identity": spec.client_identity(name),
        }
        for name in spec.clients
    ]
    if as_json:
        print_json(
            {
                "directory": str(target),
                "development_only": True,
                "warning": f"development certificates, {devcerts.DEV_LABEL}: the CA key is unprotected",
                "not_before": bundle.not_before.isoformat(),
                "not_after": bundle.not_after.isoformat(),
                "trust_domain": spec.trust_domain,
                "ca": {
                    "cert": at(devcerts.CA_CERT),
                    "key": at(devcerts.CA_KEY),
                    "subject_cn": devcerts.CA_COMMON_NAME,
                    "sha256": bundle.ca_fingerprint,
                    "pin": ca_pin,
                },
                "server": {
                    "cert": at(devcerts.SERVER_CERT),
                    "key": at(devcerts.SERVER_KEY),
                    "dns_names": list(spec.dns_names),
                    "ip_addresses": [str(ip) for ip in spec.ips],
                    "pin": server_pin,
                },
                "clients": clients,
                "readme": at(devcerts.README),
                "policy": at(devcerts.POLICY),
                "policy_principal": {"method": "mtls", "subject": spec.principal_pattern, "roles": ["agent"]},
                "stale_client_certs": [str(p) for p in stale],
            }
        )
        return

    def q(rel: str) -> str:
        return shlex.quote(at(rel))

    first = spec.clients[0]
    out.print(
        f"[bold yellow]Development certificates — {devcerts.DEV_LABEL}[/] (valid until {_when(bundle.not_after)}), "
        f"written to {escape(str(target))}:",
        highlight=False,
    )
    lines = [
        f"  CA      {at(devcerts.CA_CERT)}  (key {devcerts.CA_KEY}: unprotected, mode 0600)",
        f"  server  {at(devcerts.SERVER_CERT)}, {devcerts.SERVER_KEY}"
        f"  DNS {', '.join(spec.dns_names)}; IP {', '.join(str(ip) for ip in spec.ips)}",
    ]
    lines += [f"  client  {c['cert']}, {Path(c['key']).name}  identity {c['identity']}" for c in clients]
    lines += [
        f"  pins    CA {ca_pin}",
        f"          server {server_pin}",
    ]
    lines += [
        "",
        "Serve gRPC with mutual TLS (the development policy gives every client certificate the agent role):",
        f"  NATS_MCP_SECURITY_POLICY_FILE={q(devcerts.POLICY)} nats-mcp serve --transport grpc "
        f"--tls-cert {q(devcerts.SERVER_CERT)} --tls-key {q(devcerts.SERVER_KEY)} --client-ca {q(devcerts.CA_CERT)}",
        f"Connect as {first} (the stdio bridge):",
        f"  nats-mcp bridge --grpc localhost:PORT --ca {q(devcerts.CA_CERT)} "
        f"--cert {q(devcerts.client_cert_path(first))} --key {q(devcerts.client_key_path(first))} --pin {ca_pin}",
        f"Your own policy gives them roles with: principals: [{{method: mtls, subject: "
        f'"{spec.principal_pattern}", roles: [agent]}}]',
        f"More in {at(devcerts.README)}. Never trust this CA outside development.",
    ]
    out.print("\n".join(lines), markup=False, highlight=False)
    if stale:
        out.print(
            "[yellow]note:[/] issued by the replaced CA, these no longer work: "
            + escape(", ".join(str(p) for p in stale)),
            highlight=False,
        )
