"""OSV records (one JSON file, a directory, or osv.dev's per-ecosystem all.zip) matched against installed versions.

Offline by design: the export is a file the operator brought. Anything that keeps a verdict from being certain
(an unreadable file, something that is not OSV, an export without a single PyPI record, a record about an
installed package whose versions cannot be compared) is reported, never taken for an all-clear.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from nats_mcp.supply.installed import normalize, same_version

ECOSYSTEM = "PyPI"
_RANGE_TYPES = frozenset({"ECOSYSTEM", "SEMVER"})  # GIT ranges name commits, not releases: not comparable here


class OsvError(Exception):
    """The export cannot be read or is not OSV."""


@dataclass(frozen=True)
class Finding:
    id: str
    aliases: tuple[str, ...]
    package: str
    installed: str
    fixed: tuple[str, ...]  # empty: no fixed release known
    summary: str


@dataclass(frozen=True)
class Undetermined:
    id: str
    package: str
    installed: str
    reason: str


@dataclass
class Verdict:
    records: int = 0
    pypi_records: int = 0
    findings: list[Finding] = field(default_factory=list)
    undetermined: list[Undetermined] = field(default_factory=list)


def records(path: Path) -> Iterator[dict[str, Any]]:
    """The OSV records of the export at ``path``, one document at a time (an all.zip holds hundreds of MB of
    JSON: only one member is in memory at once). Raises OsvError, while iterating, on what is unreadable or not
    OSV."""
    try:
        for where, raw in _documents(path):
            yield from _records(where, raw)
    except OSError as exc:
        raise OsvError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except zipfile.BadZipFile as exc:
        raise OsvError(f"{path} is a damaged zip file: {exc}") from exc


def _documents(path: Path) -> Iterator[tuple[str, bytes]]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if p.is_file())
        if not files:
            raise OsvError(f"{path} is a directory without .json files")
        for file in files:
            yield str(file), file.read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir() and info.filename.endswith(".json"):
                    yield f"{path}:{info.filename}", archive.read(info)
    else:
        yield str(path), path.read_bytes()


def _records(where: str, raw: bytes) -> list[dict[str, Any]]:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OsvError(f"{where} is not JSON: {exc}") from exc
    if isinstance(doc, dict) and isinstance(doc.get("vulns"), list):
        doc = doc["vulns"]  # the osv.dev query API's answer
    items = doc if isinstance(doc, list) else [doc]
    for item in items:
        _validate(where, item)
    return items


def _validate(where: str, record: Any) -> None:
    """The fields this check reads, with the types the OSV schema gives them."""
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"]:
        raise OsvError(f"{where} is not OSV: a record without a string 'id'")
    affected = record.get("affected", [])
    bad = f"{where} is not OSV: record {record['id']}"
    if not isinstance(affected, list) or not all(isinstance(a, dict) for a in affected):
        raise OsvError(f"{bad}: 'affected' is not a list of objects")
    for entry in affected:
        if not isinstance(entry.get("package", {}), dict):
            raise OsvError(f"{bad}: 'affected[].package' is not an object")
        versions = entry.get("versions", [])
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise OsvError(f"{bad}: 'affected[].versions' is not a list of strings")
        ranges = entry.get("ranges", [])
        if not isinstance(ranges, list) or not all(
            isinstance(r, dict) and isinstance(r.get("events", []), list) for r in ranges
        ):
            raise OsvError(f"{bad}: 'affected[].ranges' is not a list of objects with 'events'")
        for rng in ranges:
            for event in rng.get("events", []):
                if not isinstance(event, dict) or not all(isinstance(v, str) for v in event.values()):
                    raise OsvError(f"{bad}: a range event is not an object of strings")


def check(export: Iterable[dict[str, Any]], installed: dict[str, str]) -> Verdict:
    """Match the records against ``installed`` (normalised name -> version); OsvError without any PyPI record."""
    verdict = Verdict()
    for record in export:
        verdict.records += 1
        pypi = [a for a in record.get("affected", []) if a.get("package", {}).get("ecosystem") == ECOSYSTEM]
        verdict.pypi_records += bool(pypi)
        if record.get("withdrawn"):
            continue
        hit: dict[str, set[str]] = {}
        for entry in pypi:
            name = normalize(str(entry["package"].get("name", "")))
            if name not in installed:
                continue
            affected, fixed, reason = _affects(entry, installed[name])
            if reason:
                verdict.undetermined.append(Undetermined(record["id"], name, installed[name], reason))
            elif affected:
                hit.setdefault(name, set()).update(fixed)
        for name, fixed in sorted(hit.items()):
            verdict.findings.append(
                Finding(
                    id=record["id"],
                    aliases=tuple(a for a in _list(record.get("aliases")) if isinstance(a, str)),
                    package=name,
                    installed=installed[name],
                    fixed=tuple(sorted(fixed, key=_sort_key)),
                    summary=str(record.get("summary", "")),
                )
            )
    if not verdict.records:
        raise OsvError("the export holds no OSV records")
    if not verdict.pypi_records:
        raise OsvError(f"the export holds no {ECOSYSTEM} records: it cannot clear Python packages")
    return verdict


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _sort_key(text: str) -> tuple[int, Version | str]:
    try:
        return (0, Version(text))
    except InvalidVersion:
        return (1, text)


def _affects(entry: dict[str, Any], installed: str) -> tuple[bool, set[str], str]:
    """(affected, the fixed versions above the installed one, why it cannot be decided or "")."""
    listed = any(same_version(v, installed) for v in entry.get("versions", []))
    ranges = [r for r in entry.get("ranges", []) if r.get("type") in _RANGE_TYPES]
    try:
        version = Version(installed)
        in_range = [rng for rng in ranges if _in_range(version, rng["events"])]
        fixed = {e["fixed"] for r in ranges for e in r["events"] if "fixed" in e and Version(e["fixed"]) > version}
    except InvalidVersion as exc:
        if listed:
            return True, set(), ""
        return False, set(), f"versions cannot be compared ({exc})"
    if not listed and not ranges and not entry.get("versions"):
        return False, set(), "the record gives neither a version list nor an ECOSYSTEM range"
    return listed or bool(in_range), fixed, ""


def _in_range(version: Version, events: list[dict[str, str]]) -> bool:
    """The OSV schema's evaluation: walk the events in version order; introduced opens, fixed/limit and a
    last_affected below the version close."""

    def key(event: dict[str, str]) -> tuple[Version, int]:
        kind, value = next(iter(event.items()))
        return (Version("0") if value == "0" else Version(value), 0 if kind == "introduced" else 1)

    def closes(event: dict[str, str]) -> bool:
        if "last_affected" in event:
            return version > Version(event["last_affected"])
        bound = event.get("fixed", event.get("limit"))
        return bound is not None and version >= Version(bound)

    affected = False
    for event in sorted((e for e in events if e), key=key):
        if "introduced" in event:
            affected = affected or event["introduced"] == "0" or version >= Version(event["introduced"])
        elif closes(event):
            affected = False
    return affected
