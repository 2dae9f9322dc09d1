"""Boundary between uv.lock and the running environment: what is installed is exactly what the lock says.

The set the lock holds for the test run comes from ``uv export`` (the uv that scripts/bootstrap installed from
scripts/uv-requirements.txt); the installed set from ``importlib.metadata``. A package missing, at another version,
or installed without being in the lock fails the run, so no test result ever rests on an unlocked combination.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
UV = ROOT / ".cache" / "uv" / "bin" / "uv"
PROJECT = "nats-mcp-server"
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;]+)\s*(?:;\s*(?P<marker>.+))?$")


def locked(*extras: str) -> dict[str, str]:
    """Package -> version that uv.lock installs on this interpreter for the base set plus ``extras``."""
    if not UV.exists():
        pytest.fail(f"{UV} is missing: install with scripts/bootstrap test (make test does)")
    args = [str(UV), "export", "--frozen", "--no-hashes", "--no-emit-project", "--no-header", "--no-annotate"]
    for extra in extras:
        args += ["--extra", extra]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return pins(out)


def pins(requirements: str) -> dict[str, str]:
    """``name==version ; marker`` lines whose marker holds here, as canonical name -> version."""
    result: dict[str, str] = {}
    for line in requirements.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        assert match, f"not a pinned requirement: {line!r}"
        if match["marker"] and not Marker(match["marker"]).evaluate():
            continue
        result[canonicalize_name(match["name"])] = match["version"]
    return result


def installed() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[canonicalize_name(name)] = dist.version
    found.pop(canonicalize_name(PROJECT), None)
    return found


def test_pins_reads_versions_and_markers() -> None:
    text = 'a-b==1.0\nc==2.0 ; sys_platform == "no-such-os"\n# comment\nD_e==3.1 ; python_version >= "3"\n'
    assert pins(text) == {"a-b": "1.0", "d-e": "3.1"}


def test_every_locked_package_is_installed_at_its_locked_version() -> None:
    want = locked("test")
    have = installed()
    wrong = {name: (version, have.get(name)) for name, version in want.items() if have.get(name) != version}
    assert wrong == {}, "package: (locked, installed) — reinstall with scripts/bootstrap test"


def test_nothing_is_installed_that_the_lock_does_not_hold() -> None:
    allowed = locked("test", "bench")  # make bench adds its extra; make test removes it again
    extra = sorted(set(installed()) - set(allowed))
    assert extra == [], f"installed but not in uv.lock: {extra}"


def test_the_interpreter_is_in_the_locked_python_range() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert SpecifierSet(lock["requires-python"]) == SpecifierSet(project["requires-python"])
    assert ".".join(map(str, sys.version_info[:3])) in SpecifierSet(lock["requires-python"])
