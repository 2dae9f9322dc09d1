"""uv.lock -> the runtime set of the default install, rendered as a CycloneDX 1.6 SBOM (build time, from the repo).

`python -m nats_mcp.supply.lockfile --write` renders `sbom.cdx.json` next to this module from `uv.lock` in the
working directory (`make sbom`); without `--write` it prints it. A unit test checks the committed file equals
the rendering, so the SBOM in the wheel and the image always describes the lock the release was built from.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT = "nats-mcp-server"
SBOM_FILE = Path(__file__).with_name("sbom.cdx.json")
MARKER_PROPERTY = "nats-mcp:marker"
SCOPE = (
    "runtime: every package uv.lock installs for the default install of nats-mcp-server (its dependencies and "
    "their extras, followed to the end) on any platform and supported Python; the lock's test and bench extras "
    "are left out. A component installed only where an environment marker holds carries it in the "
    f"{MARKER_PROPERTY} property."
)
HASHES = (
    "each component's distribution references are the lock's sdist and wheels with their SHA-256, the hashes "
    "an install from the lock verifies"
)
# A namespace for serial numbers derived from the content: the same lock always renders the same SBOM.
_SERIAL_NS = uuid.UUID("6f1c1f39-3b1e-4f4e-9c55-7c1d5e0b2a11")

Conj = frozenset[str]  # markers that must all hold
Dnf = frozenset[Conj]  # any one conjunction suffices; {frozenset()} is "always"


class LockError(Exception):
    """uv.lock does not have the shape this reader understands."""


@dataclass(frozen=True)
class Artifact:
    kind: str  # "sdist" or "wheel"
    url: str
    sha256: str


@dataclass(frozen=True)
class Locked:
    """One package of the runtime set."""

    name: str
    version: str
    marker: str | None  # None: installed wherever the server is
    artifacts: tuple[Artifact, ...]
    depends_on: tuple[str, ...]  # purls

    @property
    def purl(self) -> str:
        return purl(self.name, self.version)


def purl(name: str, version: str) -> str:
    return f"pkg:pypi/{name.lower().replace('_', '-')}@{version}"


Key = tuple[str, str]  # (name, version)
Node = tuple[Key, str | None]  # a package, or one of its extras


def _targets(dep: dict[str, Any], by_name: dict[str, list[Key]]) -> list[Node]:
    keys = by_name.get(dep["name"], [])
    if "version" in dep:
        keys = [k for k in keys if k[1] == dep["version"]]
    if len(keys) != 1:
        raise LockError(f"dependency {dep['name']!r} names {len(keys)} locked packages, not one")
    return [(keys[0], None), *((keys[0], extra) for extra in dep.get("extra", []))]


def _or(old: Dnf, new: Dnf) -> Dnf:
    merged = old | new
    if frozenset() in merged:
        return frozenset({frozenset()})
    return frozenset(c for c in merged if not any(o < c for o in merged))


def runtime_set(lock: dict[str, Any]) -> tuple[list[Locked], list[str]]:
    """The packages the default install takes (each with the condition it is installed under), and the purls of
    the project's direct dependencies."""
    packages: dict[Key, dict[str, Any]] = {}
    by_name: dict[str, list[Key]] = {}
    for pkg in lock.get("package", []):
        key = (pkg["name"], str(pkg.get("version", "")))
        packages[key] = pkg
        by_name.setdefault(pkg["name"], []).append(key)
    roots = by_name.get(PROJECT, [])
    if len(roots) != 1:
        raise LockError(f"uv.lock holds {len(roots)} entries named {PROJECT}")
    root: Node = (roots[0], None)
    reach: dict[Node, Dnf] = {root: frozenset({frozenset()})}
    edges: dict[Key, set[Key]] = {}
    todo = [root]
    while todo:  # a fixpoint: a node is visited again when the condition it is reached under widens
        node = todo.pop()
        (key, extra), cond = node, reach[node]
        pkg = packages[key]
        deps = pkg.get("dependencies", []) if extra is None else pkg.get("optional-dependencies", {}).get(extra, [])
        successors: list[tuple[Node, str | None]] = []
        if extra is not None:
            successors.append(((key, None), None))
        for dep in deps:
            successors += [(target, dep.get("marker")) for target in _targets(dep, by_name)]
        for target, marker in successors:
            if target[0] != key:
                edges.setdefault(key, set()).add(target[0])
            extended = frozenset(c | {marker} if marker else c for c in cond)
            widened = _or(reach.get(target, frozenset()), extended)
            if widened != reach.get(target):
                reach[target] = widened
                todo.append(target)
    conditions: dict[Key, Dnf] = {}
    for (key, _extra), cond in reach.items():
        conditions[key] = _or(conditions.get(key, frozenset()), cond)
    conditions.pop(root[0])
    out: list[Locked] = []
    for key in sorted(conditions):
        pkg = packages[key]
        out.append(
            Locked(
                name=key[0],
                version=key[1],
                marker=_render_marker(conditions[key]),
                artifacts=_artifacts(pkg),
                depends_on=tuple(sorted(purl(*k) for k in edges.get(key, set()) if k in conditions)),
            )
        )
    return out, sorted(purl(*k) for k in edges.get(root[0], set()))


def _render_marker(cond: Dnf) -> str | None:
    if frozenset() in cond:
        return None

    def atom(m: str) -> str:
        return f"({m})" if " or " in m else m

    conjs = sorted(" and ".join(atom(m) for m in sorted(c)) for c in cond)
    if len(conjs) == 1:
        return conjs[0]
    return " or ".join(f"({c})" if " and " in c else c for c in conjs)


def _artifacts(pkg: dict[str, Any]) -> tuple[Artifact, ...]:
    found = [("sdist", pkg["sdist"])] if "sdist" in pkg else []
    found += [("wheel", wheel) for wheel in pkg.get("wheels", [])]
    out = []
    for kind, entry in found:
        algo, _, digest = str(entry.get("hash", "")).partition(":")
        if algo != "sha256" or not digest:
            raise LockError(f"{pkg['name']} {pkg.get('version')}: a {kind} without a sha256 hash in uv.lock")
        out.append(Artifact(kind, entry["url"], digest))
    if not out:
        raise LockError(f"{pkg['name']} {pkg.get('version')}: no sdist or wheel in uv.lock")
    return tuple(out)


def render(lock_text: str) -> str:
    """The CycloneDX 1.6 JSON document (deterministic: no timestamp, a serial number derived from the content)."""
    try:
        lock = tomllib.loads(lock_text)
    except tomllib.TOMLDecodeError as exc:
        raise LockError(f"uv.lock is not TOML: {exc}") from exc
    packages, direct = runtime_set(lock)  # raises LockError unless the project is in the lock, once
    project_version = next(str(p["version"]) for p in lock["package"] if p.get("name") == PROJECT)
    root_ref = purl(PROJECT, project_version)
    components = [_component(p) for p in packages]
    dependencies = [{"ref": root_ref, "dependsOn": direct}]
    dependencies += [{"ref": p.purl, "dependsOn": list(p.depends_on)} for p in packages]
    body: dict[str, Any] = {
        "metadata": {
            "tools": {"components": [{"type": "application", "name": "nats_mcp.supply.lockfile"}]},
            "component": {
                "type": "application",
                "bom-ref": root_ref,
                "name": PROJECT,
                "version": project_version,
                "purl": root_ref,
                "licenses": [{"license": {"id": "Apache-2.0"}}],
            },
            "properties": [
                {"name": "nats-mcp:sbom:source", "value": "uv.lock"},
                {"name": "nats-mcp:sbom:scope", "value": SCOPE},
                {"name": "nats-mcp:sbom:hashes", "value": HASHES},
            ],
        },
        "components": components,
        "dependencies": dependencies,
    }
    serial = uuid.uuid5(_SERIAL_NS, json.dumps(body, sort_keys=True))
    doc = {"bomFormat": "CycloneDX", "specVersion": "1.6", "serialNumber": f"urn:uuid:{serial}", "version": 1}
    return json.dumps({**doc, **body}, indent=1) + "\n"


def _component(p: Locked) -> dict[str, Any]:
    comp: dict[str, Any] = {"type": "library", "bom-ref": p.purl, "name": p.name, "version": p.version}
    comp["purl"] = p.purl
    comp["externalReferences"] = [
        {"type": "distribution", "url": a.url, "comment": a.kind, "hashes": [{"alg": "SHA-256", "content": a.sha256}]}
        for a in p.artifacts
    ]
    if p.marker:
        comp["properties"] = [{"name": MARKER_PROPERTY, "value": p.marker}]
    return comp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nats_mcp.supply.lockfile", description=__doc__)
    parser.add_argument("lock", nargs="?", default="uv.lock", type=Path, help="the lock file (default: ./uv.lock)")
    parser.add_argument("--write", action="store_true", help=f"write {SBOM_FILE.name} next to this module")
    args = parser.parse_args(argv)
    try:
        text = render(args.lock.read_text(encoding="utf-8"))
    except (OSError, LockError) as exc:
        print(f"sbom: {exc}", file=sys.stderr)
        return 2
    if not args.write:
        sys.stdout.write(text)
        return 0
    # Written whole or not at all: a failed render never leaves a truncated SBOM behind.
    fd, tmp = tempfile.mkstemp(dir=SBOM_FILE.parent, prefix=".sbom-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)  # package data: readable by whoever runs the server
    os.replace(tmp, SBOM_FILE)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
