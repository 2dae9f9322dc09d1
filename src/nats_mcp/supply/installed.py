"""The running server's dependency set, read from the installed distributions, and how it compares with the SBOM.

The installed set is the closure of nats-mcp-server's own requirements (``importlib.metadata``), with their extras
and environment markers evaluated here: what this interpreter actually runs, independent of the shipped SBOM, so
a stale or edited SBOM cannot hide a package.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import metadata, resources
from typing import Any

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from nats_mcp.supply.lockfile import MARKER_PROPERTY, PROJECT, SBOM_FILE

MATCH = "match"  # installed at the SBOM's version
OTHER_PLATFORM = "other_platform"  # in the SBOM for another platform (its marker does not hold), not installed
DIFFERS = "differs"  # installed at another version
NOT_INSTALLED = "not_installed"  # the SBOM says this platform needs it; it is not installed here
NOT_IN_SBOM = "not_in_sbom"  # installed and required, the SBOM does not list it
MISSING = "missing"  # required by an installed distribution's metadata but not installed
FINE = frozenset({MATCH, OTHER_PLATFORM})


def normalize(name: str) -> str:
    """PEP 503: runs of ``-``, ``_`` and ``.`` become one ``-``, lower case."""
    return re.sub(r"[-_.]+", "-", name).lower()


def same_version(a: str, b: str) -> bool:
    """PEP 440 equality (``1.0`` is ``1.0.0``), plain text for versions PEP 440 does not parse."""
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


@dataclass(frozen=True)
class SbomEntry:
    name: str
    version: str
    marker: str | None

    def applies_here(self) -> bool:
        return self.marker is None or Marker(self.marker).evaluate()


@dataclass(frozen=True)
class Compared:
    name: str
    installed: str | None
    sbom: str | None
    status: str


def shipped_sbom_text() -> str:
    """The SBOM shipped inside the package (the wheel's and the image's copy)."""
    return resources.files("nats_mcp.supply").joinpath(SBOM_FILE.name).read_text(encoding="utf-8")


def sbom_entries(doc: dict[str, Any]) -> list[SbomEntry]:
    out = []
    for comp in doc.get("components", []):
        props = {p.get("name"): p.get("value") for p in comp.get("properties", [])}
        out.append(SbomEntry(normalize(comp["name"]), str(comp["version"]), props.get(MARKER_PROPERTY)))
    return out


def shipped_entries() -> list[SbomEntry]:
    return sbom_entries(json.loads(shipped_sbom_text()))


def installed_runtime(project: str = PROJECT) -> dict[str, str | None]:
    """Normalised name -> installed version of everything ``project`` requires here (None: required, not found).

    Raises ``metadata.PackageNotFoundError`` when ``project`` itself is not installed.
    """
    root = normalize(project)
    found: dict[str, str | None] = {}
    extras_seen: dict[str, set[str]] = {}
    todo: list[tuple[str, frozenset[str]]] = [(project, frozenset())]
    metadata.distribution(project)  # fail loudly, before walking, when the project is not installed
    while todo:
        name, extras = todo.pop()
        key = normalize(name)
        seen = extras_seen.get(key)
        if seen is not None and extras <= seen:
            continue
        extras_seen[key] = (seen or set()) | extras
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            found[key] = None
            continue
        if key != root:
            found[key] = dist.version
        for line in dist.requires or []:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue  # a distribution's own malformed metadata: nothing it could install either
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras | {""})):
                todo.append((req.name, frozenset(req.extras)))
    return found


def compare(installed: dict[str, str | None], entries: list[SbomEntry]) -> list[Compared]:
    """Every package of either side, with its status (see the module constants), sorted by name."""
    by_name: dict[str, list[SbomEntry]] = {}
    for entry in entries:
        by_name.setdefault(entry.name, []).append(entry)
    out = []
    for name in sorted(set(by_name) | set(installed)):
        here = installed.get(name)
        candidates = by_name.get(name, [])
        applying = [e for e in candidates if e.applies_here()]
        sbom_version = (applying or candidates)[0].version if candidates else None
        if name in installed and here is None:
            status = MISSING
        elif here is not None and not candidates:
            status = NOT_IN_SBOM
        elif here is not None:
            same = [e for e in applying if same_version(e.version, here)]
            status = MATCH if same else DIFFERS
            sbom_version = same[0].version if same else sbom_version
        else:
            status = NOT_INSTALLED if applying else OTHER_PLATFORM
        out.append(Compared(name, here, sbom_version, status))
    return out
