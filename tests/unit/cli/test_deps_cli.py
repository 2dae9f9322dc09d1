"""`nats-mcp version` and `nats-mcp deps` on this environment's real installed distributions (typer in-process)."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nats_mcp import __version__
from nats_mcp.cli.main import app
from nats_mcp.supply import installed as installed_mod
from nats_mcp.supply.lockfile import SBOM_FILE

PYYAML = metadata.version("pyyaml")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_version_reports_the_installed_dependencies_against_the_shipped_sbom() -> None:
    code, out, _ = run("version", "--json", "--check")
    assert code == 0, out
    report = json.loads(out)
    assert report["version"] == __version__ and report["sbom"]["matches"] is True
    deps = {d["name"]: d for d in report["dependencies"]}
    assert deps["pyyaml"] == {"name": "pyyaml", "version": PYYAML, "sbom_version": PYYAML, "status": "match"}
    assert "pytest" not in deps  # installed here for the tests, but not a dependency of the server
    assert {d["status"] for d in deps.values()} <= {"match", "other_platform"}
    code, out, _ = run("version")
    assert code == 0 and f"nats-mcp {__version__}" in out and "all at the versions of the shipped SBOM" in out


def test_version_check_fails_when_the_installed_set_differs_from_the_sbom(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = json.loads(SBOM_FILE.read_text(encoding="utf-8"))
    for comp in doc["components"]:
        if comp["name"] == "pyyaml":
            comp["version"] = "0.1"
    doc["components"] = [c for c in doc["components"] if c["name"] != "rich"]
    monkeypatch.setattr(installed_mod, "shipped_sbom_text", lambda: json.dumps(doc))
    code, out, _ = run("version", "--json", "--check")
    assert code == 1
    report = json.loads(out)
    statuses = {d["name"]: d["status"] for d in report["dependencies"]}
    assert report["sbom"]["matches"] is False
    assert (statuses["pyyaml"], statuses["rich"]) == ("differs", "not_in_sbom")
    code, out, _ = run("version")  # without --check it reports and exits 0
    assert code == 0 and f"pyyaml: installed {PYYAML}, SBOM 0.1 (differs)" in out


def _export(path: Path, fixed: str) -> Path:
    record = {
        "id": "GHSA-plnt-0001",
        "aliases": ["CVE-2026-0001"],
        "modified": "2026-12-01T00:00:00Z",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "PyYAML"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
            }
        ],
    }
    path.write_text(json.dumps([record]))
    return path


def test_deps_audit_exit_codes_say_vulnerable_clean_or_no_verdict(tmp_path: Path) -> None:
    code, out, err = run("deps", "audit", "--osv", str(_export(tmp_path / "v.json", "99.0")))
    assert code == 1, out + err
    assert f"GHSA-plnt-0001 (CVE-2026-0001): pyyaml {PYYAML} is affected; fixed in 99.0" in out

    code, out, err = run("deps", "audit", "--osv", str(_export(tmp_path / "c.json", PYYAML)), "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["ok"] is True and report["vulnerabilities"] == [] and report["packages_checked"] > 50

    (tmp_path / "bad.json").write_text('{"advisories": []}')
    code, out, err = run("deps", "audit", "--osv", str(tmp_path / "bad.json"))
    assert code == 2 and "is not OSV" in err and "no known vulnerabilities" not in out
    code, out, err = run("deps", "audit", "--osv", str(tmp_path / "absent.zip"))
    assert code == 2 and "cannot read" in err


def test_deps_sbom_prints_the_shipped_file() -> None:
    code, out, _ = run("deps", "sbom")
    assert code == 0 and out == SBOM_FILE.read_text(encoding="utf-8")
