"""Boundary between test markers and `make test-fast`: every chaos and soak module is marked, every marker registered.

`make test-fast` runs the suite with ``-m FAST_TESTS`` (the Makefile); a chaos or soak module without its marker
would slip into it, and an unregistered marker would make the whole run fail (``--strict-markers``).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TESTS = ROOT / "tests"
MARKED_DIRECTORIES = {"chaos": TESTS / "chaos", "soak": TESTS / "soak"}
"""Every test module in these directories carries the marker of the directory's name."""
BUILTIN_MARKERS = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings", "timeout", "asyncio"}
"""Markers that pytest and the plugins in use (pytest-timeout, pytest-asyncio) register themselves."""


def pytest_options() -> dict[str, object]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    options: dict[str, object] = pyproject["tool"]["pytest"]["ini_options"]
    return options


def registered() -> set[str]:
    markers = pytest_options()["markers"]
    assert isinstance(markers, list)
    return {str(line).split(":", 1)[0].strip() for line in markers}


def fast_expression() -> str:
    found = re.search(r"^FAST_TESTS\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE)
    assert found, "the Makefile defines FAST_TESTS, the marker expression of make test-fast"
    return found.group(1).strip()


def marks_of(node: ast.expr) -> set[str]:
    """Names of the ``pytest.mark.NAME`` (called or not) in a ``pytestmark`` value: one mark or a list of them."""
    items = node.elts if isinstance(node, ast.List | ast.Tuple) else [node]
    names = set()
    for item in items:
        target = item.func if isinstance(item, ast.Call) else item
        if isinstance(target, ast.Attribute) and ast.unparse(target.value) == "pytest.mark":
            names.add(target.attr)
    return names


def module_marks(source: str) -> set[str]:
    """The marks of a module's module-level ``pytestmark``."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            names |= marks_of(node.value)
    return names


def test_module_marks_reads_one_mark_and_lists_at_module_level_only() -> None:
    assert module_marks("pytestmark = pytest.mark.chaos") == {"chaos"}
    assert module_marks("pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]") == {"chaos", "timeout"}
    assert module_marks("mark = pytest.mark.chaos") == set()
    assert module_marks("def f():\n    pytestmark = pytest.mark.chaos") == set()


@pytest.mark.parametrize("marker", sorted(MARKED_DIRECTORIES))
def test_every_module_of_the_directory_is_marked(marker: str) -> None:
    modules = sorted(MARKED_DIRECTORIES[marker].glob("test_*.py"))
    assert modules, f"no test modules in {MARKED_DIRECTORIES[marker]}"
    unmarked = [p.name for p in modules if marker not in module_marks(p.read_text(encoding="utf-8"))]
    assert not unmarked, f"add `pytestmark = pytest.mark.{marker}` to: {', '.join(unmarked)}"


def test_the_fast_run_leaves_out_registered_markers() -> None:
    expression = fast_expression()
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expression)) - {"and", "or", "not"}
    assert {"slow", "chaos", "soak"} <= words, expression
    assert words <= registered(), f"unregistered markers in FAST_TESTS: {sorted(words - registered())}"
    assert "--strict-markers" in str(pytest_options()["addopts"]).split()


def test_every_marker_used_in_the_tests_is_registered() -> None:
    used: dict[str, set[str]] = {}
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "pytest.mark":
                used.setdefault(node.attr, set()).add(str(path.relative_to(ROOT)))
    assert {"chaos", "soak", "slow"} <= set(used), "the markers make test-fast leaves out are in use"
    unknown = {name: sorted(paths) for name, paths in used.items() if name not in registered() | BUILTIN_MARKERS}
    assert not unknown, f"register these markers in pyproject.toml: {unknown}"


@pytest.mark.slow  # 4 s or more in a near-idle make test-fast
def test_the_fast_expression_selects_no_chaos_or_soak_test() -> None:
    """What pytest itself selects: collecting tests/chaos and tests/soak with the fast expression keeps none."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", fast_expression()]
        + [str(d.relative_to(ROOT)) for d in MARKED_DIRECTORIES.values()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    selected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert not selected, f"chaos or soak tests in make test-fast: {selected}"
    deselected = re.search(r"\((\d+) deselected\)", proc.stdout)
    assert deselected, f"pytest did not collect: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert int(deselected.group(1)) > 0
