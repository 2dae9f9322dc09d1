"""`nats-mcp version` and `nats-mcp deps`: the command-line boundary of the supply chain (SBOM, installed set, OSV)."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nats_mcp.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, err, fail, out, print_json

if TYPE_CHECKING:
    from nats_mcp.supply.osv import Verdict

app = typer.Typer(
    help="The dependencies this installation carries: the shipped SBOM, and an offline vulnerability check.\n\n"
    "The SBOM (CycloneDX 1.6, rendered from uv.lock at release) lists the runtime packages of the default "
    "install with the hashes of their locked sdists and wheels; `nats-mcp version --json` compares it with "
    "what is installed.",
    no_args_is_help=True,
)

_Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _installed() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError

    from nats_mcp.supply.installed import installed_runtime

    try:
        return installed_runtime()
    except PackageNotFoundError:
        fail("nats-mcp-server is not installed as a distribution here: its dependencies cannot be read", EXIT_USAGE)


def version(
    as_json: _Json = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 unless the installed dependencies match the shipped SBOM.")
    ] = False,
) -> None:
    """The server's version and its dependencies' installed versions, compared with the shipped SBOM."""
    from nats_mcp import __version__  # here: every other command would pay the version lookup
    from nats_mcp.supply.installed import FINE, compare, sbom_entries, shipped_sbom_text

    sbom = json.loads(shipped_sbom_text())
    rows = compare(_installed(), sbom_entries(sbom))
    wrong = [r for r in rows if r.status not in FINE]
    if as_json:
        print_json(
            {
                "name": "nats-mcp-server",
                "version": __version__,
                "python": platform.python_version(),
                "sbom": {
                    "serial_number": sbom.get("serialNumber"),
                    "components": len(sbom.get("components", [])),
                    "matches": not wrong,
                },
                "dependencies": [
                    {"name": r.name, "version": r.installed, "sbom_version": r.sbom, "status": r.status} for r in rows
                ],
            }
        )
    else:
        out.print(f"nats-mcp {__version__} (Python {platform.python_version()})", highlight=False)
        installed = sum(1 for r in rows if r.installed)
        if not wrong:
            out.print(f"{installed} dependencies installed, all at the versions of the shipped SBOM", highlight=False)
        for r in wrong:
            out.print(f"  {r.name}: installed {r.installed or '-'}, SBOM {r.sbom or '-'} ({r.status})", highlight=False)
    raise typer.Exit(EXIT_FAIL if check and wrong else EXIT_OK)


@app.command("sbom")
def sbom() -> None:
    """Print the shipped SBOM (CycloneDX 1.6 JSON) to stdout."""
    from nats_mcp.supply.installed import shipped_sbom_text

    sys.stdout.write(shipped_sbom_text())


@app.command("audit")
def audit(
    osv: Annotated[
        Path,
        typer.Option(
            "--osv",
            metavar="FILE",
            help="An OSV export: osv.dev's PyPI all.zip, a directory of OSV .json files, or one JSON file holding "
            "a record or a list of records.",
        ),
    ],
    as_json: _Json = False,
) -> None:
    """Check the installed dependencies against an OSV export, offline.

    Exit 0: every installed dependency was checked and none is affected. 1: a known vulnerability (id, package,
    installed and fixed version printed). 2: no verdict: the file is unreadable or not OSV, holds no PyPI record,
    or a record about an installed package could not be evaluated.
    """
    from nats_mcp.supply.osv import OsvError, check, records

    installed = {name: v for name, v in _installed().items() if v is not None}
    try:
        verdict = check(records(osv), installed)
    except OsvError as exc:
        fail(str(exc), EXIT_USAGE)
    code = EXIT_FAIL if verdict.findings else EXIT_USAGE if verdict.undetermined else EXIT_OK
    if as_json:
        print_json(_as_dict(verdict, len(installed), code))
    else:
        _print(verdict, len(installed))
    raise typer.Exit(code)


def _as_dict(verdict: Verdict, checked: int, code: int) -> dict[str, Any]:
    return {
        "ok": code == EXIT_OK,
        "packages_checked": checked,
        "records": verdict.records,
        "pypi_records": verdict.pypi_records,
        "vulnerabilities": [
            {
                "id": f.id,
                "aliases": list(f.aliases),
                "package": f.package,
                "installed": f.installed,
                "fixed": list(f.fixed),
                "summary": f.summary,
            }
            for f in verdict.findings
        ],
        "undetermined": [
            {"id": u.id, "package": u.package, "installed": u.installed, "reason": u.reason}
            for u in verdict.undetermined
        ],
    }


def _print(verdict: Verdict, checked: int) -> None:
    for f in verdict.findings:
        aliases = f" ({', '.join(f.aliases)})" if f.aliases else ""
        fixed = f"fixed in {', '.join(f.fixed)}" if f.fixed else "no fixed version"
        out.print(f"{f.id}{aliases}: {f.package} {f.installed} is affected; {fixed}", highlight=False)
    for u in verdict.undetermined:
        err.print(f"[yellow]undetermined:[/] {u.id}: {u.package} {u.installed}: {u.reason}", highlight=False)
    where = f"{checked} installed packages against {verdict.pypi_records} PyPI records"
    if verdict.findings:
        err.print(f"deps audit: {len(verdict.findings)} known vulnerabilities ({where})", highlight=False)
    elif verdict.undetermined:
        err.print(
            f"deps audit: NO VERDICT: {len(verdict.undetermined)} records could not be evaluated", highlight=False
        )
    else:
        out.print(f"deps audit: no known vulnerabilities ({where})", highlight=False)
