"""The SBOM boundary: the shipped sbom.cdx.json is exactly the lock's runtime set, with the lock's hashes.

The committed file is compared with what the generator renders from uv.lock (as docs/tools.md is), and the
generator's closure is compared with uv's own (``uv export`` of the default install), so neither a stale file
nor a wrong walk of the lock passes.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest

from nats_mcp.supply import lockfile
from nats_mcp.supply.lockfile import SBOM_FILE, LockError, render, runtime_set

ROOT = Path(__file__).resolve().parents[3]
UV = ROOT / ".cache" / "uv" / "bin" / "uv"
LOCK = ROOT / "uv.lock"


def test_the_shipped_sbom_is_what_the_lock_renders() -> None:
    assert SBOM_FILE.read_text(encoding="utf-8") == render(LOCK.read_text(encoding="utf-8")), (
        "regenerate: .venv/bin/python -m nats_mcp.supply.lockfile --write (make sbom)"
    )


def test_the_sbom_lists_exactly_the_default_install_of_the_lock_with_its_hashes() -> None:
    if not UV.exists():
        pytest.fail(f"{UV} is missing: install with scripts/bootstrap test (make test does)")
    exported = subprocess.run(
        [str(UV), "export", "--frozen", "--no-emit-project", "--no-header", "--no-annotate", "--no-hashes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    by_uv = {line.split(";")[0].strip() for line in exported.splitlines() if line.strip()}
    sbom = json.loads(SBOM_FILE.read_text(encoding="utf-8"))
    assert {f"{c['name']}=={c['version']}" for c in sbom["components"]} == by_uv
    assert "pytest" not in {c["name"] for c in sbom["components"]}  # the test extra stays out

    lock = tomllib.loads(LOCK.read_text(encoding="utf-8"))
    locked = {(p["name"], p["version"]): p for p in lock["package"]}
    for comp in sbom["components"]:
        pkg = locked[(comp["name"], comp["version"])]
        want = {a["hash"] for a in [*([pkg["sdist"]] if "sdist" in pkg else []), *pkg.get("wheels", [])]}
        got = {f"sha256:{h['content']}" for ref in comp["externalReferences"] for h in ref["hashes"]}
        assert got == want, comp["name"]
        assert comp["purl"] == f"pkg:pypi/{comp['name']}@{comp['version']}"
    props = {p["name"]: p["value"] for p in sbom["metadata"]["properties"]}
    assert (
        props["nats-mcp:sbom:source"] == "uv.lock"
        and "test and bench extras are left out" in props["nats-mcp:sbom:scope"]
    )
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"


SMALL_LOCK = """
version = 1
[[package]]
name = "nats-mcp-server"
version = "1.0"
source = { editable = "." }
dependencies = [{ name = "a", marker = "sys_platform == 'win32'" }, { name = "c", extra = ["x"] }]
[package.optional-dependencies]
test = [{ name = "t" }]

[[package]]
name = "a"
version = "1"
sdist = { url = "https://e/a-1.tar.gz", hash = "sha256:aa" }
dependencies = [{ name = "b", marker = "python_version < '3.13'" }]

[[package]]
name = "b"
version = "2"
wheels = [{ url = "https://e/b-2.whl", hash = "sha256:bb" }]

[[package]]
name = "c"
version = "3"
sdist = { url = "https://e/c-3.tar.gz", hash = "sha256:cc" }
[package.optional-dependencies]
x = [{ name = "d" }]

[[package]]
name = "d"
version = "4"
sdist = { url = "https://e/d-4.tar.gz", hash = "sha256:dd" }

[[package]]
name = "t"
version = "5"
sdist = { url = "https://e/t-5.tar.gz", hash = "sha256:ee" }
"""


def test_markers_carry_down_the_graph_and_extras_are_followed() -> None:
    packages, direct = runtime_set(tomllib.loads(SMALL_LOCK))
    got = {p.name: (p.version, p.marker, p.depends_on) for p in packages}
    assert got == {
        "a": ("1", "sys_platform == 'win32'", ("pkg:pypi/b@2",)),
        "b": ("2", "python_version < '3.13' and sys_platform == 'win32'", ()),
        "c": ("3", None, ("pkg:pypi/d@4",)),  # through its extra x
        "d": ("4", None, ()),
    }  # t (the test extra) is left out
    assert direct == ["pkg:pypi/a@1", "pkg:pypi/c@3"]
    # reached a second way without a condition, b becomes unconditional
    widened = SMALL_LOCK.replace('extra = ["x"] }]', 'extra = ["x"] }, { name = "b" }]', 1)
    assert {p.name: p.marker for p in runtime_set(tomllib.loads(widened))[0]}["b"] is None


def test_a_lock_the_generator_cannot_trust_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    unhashed = SMALL_LOCK.replace('hash = "sha256:dd"', 'hash = "md5:dd"')
    with pytest.raises(LockError, match="d 4: a sdist without a sha256"):
        render(unhashed)
    with pytest.raises(LockError, match="not TOML"):
        render("[[package]\n")
    before = SBOM_FILE.read_bytes()
    bad = tmp_path / "uv.lock"
    bad.write_text(unhashed)
    assert lockfile.main([str(bad), "--write"]) == 2
    assert lockfile.main([str(tmp_path / "missing.lock"), "--write"]) == 2
    assert SBOM_FILE.read_bytes() == before
    assert [p.name for p in SBOM_FILE.parent.iterdir() if p.name.startswith(".sbom-")] == []
