"""The project-path boundary: resource paths and globs of reservations, normalised, matched, and compared for overlap.

A resource is a path relative to the project (``src/api/app.py``) or a glob over such paths: segments split by
``/``; ``*`` matches any run of characters within one segment, ``?`` one character, and a segment ``**`` any number
of segments (none included, so ``src/api/**`` covers ``src/api`` itself). Every other character is literal.
Nothing here touches the file system: a path is a name, which may or may not exist.

Overlap is decided conservatively: two patterns overlap unless they are provably disjoint (segment by segment, a
literal against a glob by matching, two globs by their literal prefixes and suffixes), so a reservation never
misses a conflict it should see, at the price of an occasional refusal of two globs that in fact share no path.
"""

from __future__ import annotations

import functools
import re

MAX_PATTERN = 1024
"""Longest normalised resource pattern (characters)."""

_WILD = frozenset("*?")
_DRIVE = re.compile(r"^[A-Za-z]:")


class BadPath(ValueError):
    """A resource that is not a project-relative path or glob; the message says why."""


def normalise(raw: str) -> str:
    """The canonical form of a resource: ``./`` and empty or ``.`` segments dropped, repeated ``**`` collapsed, no
    trailing ``/``; BadPath for an empty one, an absolute one, one with ``..``, a NUL or another control character,
    a backslash (ambiguous between systems) or one longer than :data:`MAX_PATTERN`."""
    if not isinstance(raw, str):
        raise BadPath("a resource must be a string")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise BadPath(f"resource {raw[:80]!r} contains a NUL or another control character")
    if "\\" in raw:
        raise BadPath(f"resource {raw[:80]!r} contains a backslash; separate segments with '/'")
    path = raw.strip()
    if path.startswith(("/", "~")) or _DRIVE.match(path):
        raise BadPath(f"resource {raw[:80]!r} is absolute; give a path relative to the project")
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            raise BadPath(f"resource {raw[:80]!r} escapes the project ('..')")
        if segment == "**" and segments and segments[-1] == "**":
            continue
        segments.append(segment)
    if not segments:
        raise BadPath(f"resource {raw[:80]!r} names no path (empty, or only '.' and '/')")
    normal = "/".join(segments)
    if len(normal) > MAX_PATTERN:
        raise BadPath(f"resource {normal[:80]!r}... is longer than {MAX_PATTERN} characters")
    return normal


def is_glob(pattern: str) -> bool:
    return any(ch in _WILD for ch in pattern)


@functools.lru_cache(maxsize=8192)
def _segment_regex(segment: str) -> re.Pattern[str]:
    body = "".join("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch) for ch in segment)
    return re.compile(body + r"\Z")


def _segment_matches(glob: str, name: str) -> bool:
    return _segment_regex(glob).match(name) is not None


def matches(pattern: str, path: str) -> bool:
    """Whether the literal ``path`` (normalised) is one of the paths ``pattern`` (normalised) stands for."""
    return _matches(tuple(pattern.split("/")), tuple(path.split("/")))


@functools.lru_cache(maxsize=8192)
def _matches(pat: tuple[str, ...], path: tuple[str, ...]) -> bool:
    if not pat:
        return not path
    if pat[0] == "**":
        return _matches(pat[1:], path) or (bool(path) and _matches(pat, path[1:]))
    return bool(path) and _segment_matches(pat[0], path[0]) and _matches(pat[1:], path[1:])


def _literal_ends(segment: str) -> tuple[str, str]:
    """The literal text before the first and after the last wildcard of a glob segment."""
    first = min(segment.index(ch) for ch in _WILD if ch in segment)
    last = max(segment.rindex(ch) for ch in _WILD if ch in segment)
    return segment[:first], segment[last + 1 :]


def _segments_overlap(a: str, b: str) -> bool:
    if not is_glob(a) and not is_glob(b):
        return a == b
    if not is_glob(a):
        return _segment_matches(b, a)
    if not is_glob(b):
        return _segment_matches(a, b)
    # Two globs: disjoint only when their literal prefixes or suffixes disagree; otherwise assume they overlap.
    (pa, sa), (pb, sb) = _literal_ends(a), _literal_ends(b)
    return (pa.startswith(pb) or pb.startswith(pa)) and (sa.endswith(sb) or sb.endswith(sa))


def overlap(a: str, b: str) -> bool:
    """Whether two normalised patterns may stand for a common path (False only when provably disjoint)."""
    return _overlap(tuple(a.split("/")), tuple(b.split("/")))


@functools.lru_cache(maxsize=8192)
def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    if not a or not b:
        rest = a or b
        return all(s == "**" for s in rest)
    if a[0] == "**":
        return _overlap(a[1:], b) or _overlap(a, b[1:])
    if b[0] == "**":
        return _overlap(a, b[1:]) or _overlap(a[1:], b)
    return _segments_overlap(a[0], b[0]) and _overlap(a[1:], b[1:])


def covers(grant: str, pattern: str) -> bool:
    """Whether every path ``pattern`` stands for is one ``grant`` stands for (both normalised); decided
    conservatively: False when not provable (a policy grant is never widened by doubt)."""
    return _covers(tuple(grant.split("/")), tuple(pattern.split("/")))


def _segment_covers(grant: str, segment: str) -> bool:
    if not is_glob(segment):
        return _segment_matches(grant, segment)
    if grant == "*" or grant == segment:
        return True
    # ``prefix*`` covers a glob that starts with the same literal prefix.
    head = grant[:-1]
    return grant.endswith("*") and not is_glob(head) and _literal_ends(segment)[0].startswith(head)


@functools.lru_cache(maxsize=8192)
def _covers(grant: tuple[str, ...], pat: tuple[str, ...]) -> bool:
    if not grant:
        return not pat
    if grant[0] == "**":
        return _covers(grant[1:], pat) or (bool(pat) and _covers(grant, pat[1:]))
    if not pat or pat[0] == "**":
        return False
    return _segment_covers(grant[0], pat[0]) and _covers(grant[1:], pat[1:])
