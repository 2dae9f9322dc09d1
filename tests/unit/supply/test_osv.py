"""The offline OSV check: which records affect which installed versions, and which exports give no verdict."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from nats_mcp.supply.osv import OsvError, check, records

INSTALLED = {"pyyaml": "6.0.4", "typing-extensions": "4.16.0", "nats-py": "2.16.0"}


def record(vid: str, name: str, *events: dict[str, str], versions: list[str] | None = None, **extra: Any) -> Any:
    affected: dict[str, Any] = {"package": {"ecosystem": "PyPI", "name": name}}
    if events:
        affected["ranges"] = [{"type": "ECOSYSTEM", "events": list(events)}]
    if versions is not None:
        affected["versions"] = versions
    return {"id": vid, "modified": "2026-12-01T00:00:00Z", "affected": [affected], **extra}


def found(*recs: Any) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(f.id, f.package, f.installed, f.fixed) for f in check(list(recs), INSTALLED).findings]


def test_ranges_and_version_lists_decide_per_the_osv_schema() -> None:
    assert found(record("V-1", "PyYAML", {"introduced": "0"}, {"fixed": "6.0.5"})) == [
        ("V-1", "pyyaml", "6.0.4", ("6.0.5",))
    ]
    # fixed at or below the installed version: clean
    assert found(record("V-2", "pyyaml", {"introduced": "0"}, {"fixed": "6.0.4"})) == []
    assert found(record("V-3", "pyyaml", {"introduced": "5.0"}, {"fixed": "6.0"})) == []
    # last_affected includes its own version, nothing above
    assert found(record("V-4", "pyyaml", {"introduced": "6.0"}, {"last_affected": "6.0.4"}))[0][3] == ()
    assert found(record("V-5", "pyyaml", {"introduced": "6.0"}, {"last_affected": "6.0.3"})) == []
    # two ranges in one list of events: 6.0.4 is in the second
    two = record("V-6", "pyyaml", {"introduced": "1.0"}, {"fixed": "1.5"}, {"introduced": "6.0"}, {"fixed": "6.1"})
    assert found(two) == [("V-6", "pyyaml", "6.0.4", ("6.1",))]
    assert found(record("V-7", "pyyaml", {"introduced": "7.0"})) == []
    # an explicit version list, without ranges; a version not listed is clean
    assert found(record("V-8", "pyyaml", versions=["6.0.3", "6.0.4"])) == [("V-8", "pyyaml", "6.0.4", ())]
    assert found(record("V-9", "pyyaml", versions=["6.0.3"])) == []
    # withdrawn records and other ecosystems do not count
    assert found(record("V-10", "pyyaml", {"introduced": "0"}, withdrawn="2026-12-02T00:00:00Z")) == []
    npm = record("V-11", "pyyaml", {"introduced": "0"})
    npm["affected"][0]["package"]["ecosystem"] = "npm"
    assert found(npm, record("V-12", "other", {"introduced": "0"})) == []


def test_names_match_in_any_spelling_pep_503_allows() -> None:
    for spelling in ("Typing_Extensions", "typing.extensions", "TYPING-extensions", "typing__extensions"):
        assert found(record("V-1", spelling, versions=["4.16.0"])) == [("V-1", "typing-extensions", "4.16.0", ())]


def test_a_record_that_cannot_be_evaluated_is_undetermined_not_clean() -> None:
    git_only = record("V-1", "nats-py")
    git_only["affected"][0]["ranges"] = [{"type": "GIT", "repo": "https://e/r", "events": [{"introduced": "abc"}]}]
    bad_version = record("V-2", "nats-py", {"introduced": "0"}, {"fixed": "not a version!"})
    verdict = check([git_only, bad_version], INSTALLED)
    assert verdict.findings == []
    assert [(u.id, u.package) for u in verdict.undetermined] == [("V-1", "nats-py"), ("V-2", "nats-py")]


def test_exports_are_read_as_a_file_a_list_a_directory_or_an_all_zip(tmp_path: Path) -> None:
    vuln = record("V-1", "pyyaml", {"introduced": "0"}, {"fixed": "6.0.5"})
    clean = record("V-2", "pyyaml", versions=["1.0"])
    (tmp_path / "one.json").write_text(json.dumps(vuln))
    (tmp_path / "list.json").write_text(json.dumps([vuln, clean]))
    with zipfile.ZipFile(tmp_path / "all.zip", "w") as archive:  # osv.dev's layout: one record per member
        archive.writestr("V-1.json", json.dumps(vuln))
        archive.writestr("V-2.json", json.dumps(clean))
    tree = tmp_path / "tree" / "PyPI"
    tree.mkdir(parents=True)
    (tree / "V-2.json").write_text(json.dumps(clean))
    assert [r["id"] for r in records(tmp_path / "one.json")] == ["V-1"]
    assert [r["id"] for r in records(tmp_path / "list.json")] == ["V-1", "V-2"]
    assert sorted(r["id"] for r in records(tmp_path / "all.zip")) == ["V-1", "V-2"]
    assert [r["id"] for r in records(tmp_path / "tree")] == ["V-2"]
    assert len(check(records(tmp_path / "all.zip"), INSTALLED).findings) == 1
    assert check(records(tmp_path / "tree"), INSTALLED).findings == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "is not JSON"),
        (b"\xff\xfe\x00", "is not JSON"),
        (b'{"vulnerabilities": []}', "without a string 'id'"),
        (b"[1, 2]", "without a string 'id'"),
        (b"[]", "holds no OSV records"),
        (b'{"id": "V-1", "affected": {"package": {}}}', "'affected' is not a list"),
        (b'{"id": "V-1", "affected": [{"versions": "6.0.4"}]}', "'affected[].versions' is not a list"),
        (b'{"id": "V-1", "affected": [{"ranges": [{"events": [{"fixed": 6}]}]}]}', "event is not an object"),
    ],
)
def test_what_is_not_osv_is_refused_with_its_reason(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "export.json"
    path.write_bytes(content)
    with pytest.raises(OsvError, match=re.escape(message)):
        check(records(path), INSTALLED)


def test_exports_that_cannot_clear_anything_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OsvError, match="cannot read"):
        check(records(tmp_path / "missing.json"), INSTALLED)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OsvError, match=r"without \.json files"):
        check(records(tmp_path / "empty"), INSTALLED)
    (tmp_path / "broken.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty archive
    with pytest.raises(OsvError, match="no OSV records"):
        check(records(tmp_path / "broken.zip"), INSTALLED)
    npm = record("V-1", "left-pad", {"introduced": "0"})
    npm["affected"][0]["package"]["ecosystem"] = "npm"
    with pytest.raises(OsvError, match="no PyPI records"):
        check([npm], INSTALLED)
