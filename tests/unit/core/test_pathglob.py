"""Reservation paths and globs: normalisation, matching, the conservative overlap rule and policy containment."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nats_mcp.core import pathglob
from nats_mcp.core.pathglob import BadPath, covers, matches, normalise, overlap


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("src/api/app.py", "src/api/app.py"),
        ("./src//api/./app.py/", "src/api/app.py"),
        ("  src/**/**/x  ", "src/**/x"),
        ("**", "**"),
        ("a b/c", "a b/c"),
    ],
)
def test_normalise(raw: str, normal: str) -> None:
    assert normalise(raw) == normal


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("../etc/passwd", "escapes"),
        ("src/../../x", "escapes"),
        ("/etc/passwd", "absolute"),
        ("~/x", "absolute"),
        ("C:/x", "absolute"),
        ("a\x00b", "NUL"),
        ("a\nb", "control"),
        ("a\\b", "backslash"),
        ("", "names no path"),
        ("./", "names no path"),
        ("x" * 1025, "longer"),
    ],
)
def test_normalise_refuses(raw: str, why: str) -> None:
    with pytest.raises(BadPath, match=why):
        normalise(raw)


def test_matching() -> None:
    assert matches("src/api/**", "src/api") and matches("src/api/**", "src/api/a/b.py")
    assert not matches("src/api/**", "src/apis/x")
    assert matches("src/*.py", "src/a.py") and not matches("src/*.py", "src/a/b.py")
    assert matches("**/test_?.py", "a/b/test_1.py") and not matches("**/test_?.py", "test_12.py")
    assert matches("a[1].py", "a[1].py") and not matches("a[1].py", "a1.py")  # only * and ? are wildcards


def test_overlap_examples() -> None:
    assert overlap("src/api/**", "src/api/app.py")
    assert overlap("src/**", "**/app.py")
    assert overlap("src/*.py", "src/a*")
    assert not overlap("src/api/**", "src/web/**")
    assert not overlap("src/*.py", "src/*.md")
    assert not overlap("src/a", "src/a/b")
    assert not overlap("docs/x.md", "src/**")


def test_covers_examples() -> None:
    assert covers("**", "anything/at/**") and covers("src/**", "src/api/**") and covers("src/**", "src")
    assert covers("src/*", "src/a*") and covers("src/a*", "src/ab*")
    assert not covers("src/*", "src/a/b") and not covers("src/**", "**") and not covers("src/a*", "src/*")
    assert not covers("src/api/**", "src/**")


# -- the property: the overlap rule against brute force over sample paths ---------------------------

_NAMES = ["a", "b", "ab", "a.py", "b.py", "x"]
_SEGMENTS = [*_NAMES, "*", "?", "a*", "*.py", "*b", "**"]
_SAMPLES = ["/".join(parts) for n in range(1, 4) for parts in itertools.product([*_NAMES, "ba", "a.md", "q"], repeat=n)]
patterns = st.lists(st.sampled_from(_SEGMENTS), min_size=1, max_size=4).map("/".join).map(normalise)


@settings(max_examples=200, deadline=None)
@given(patterns, patterns)
def test_overlap_is_conservative(a: str, b: str) -> None:
    """Two patterns a sample path matches both of always overlap (never a missed conflict); the rule is symmetric;
    and a pattern overlaps every literal path it matches."""
    shared = [p for p in _SAMPLES if matches(a, p) and matches(b, p)]
    if shared:
        assert overlap(a, b), (a, b, shared[:3])
    assert overlap(a, b) == overlap(b, a)
    for path in _SAMPLES[:60]:
        assert overlap(a, path) == matches(a, path)


@settings(max_examples=200, deadline=None)
@given(patterns, patterns)
def test_covers_is_sound(grant: str, wanted: str) -> None:
    """When the policy's containment says a grant covers a pattern, no sample path of the pattern escapes it."""
    if covers(grant, wanted):
        assert all(matches(grant, p) for p in _SAMPLES if matches(wanted, p)), (grant, wanted)


def test_literal_overlap_is_exact() -> None:
    """Between two literal paths the rule is equality (no false conflicts there)."""
    assert overlap("a/b", "a/b") and not overlap("a/b", "a/bc")
    assert not pathglob.is_glob("a/b") and pathglob.is_glob("a/*")
