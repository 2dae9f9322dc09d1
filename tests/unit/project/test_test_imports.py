"""No module under tests/ imports from a test module: shared helpers live in tests/support (issue 26)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]


def is_test_module(name: str) -> bool:
    """`tests.<dir>[.<sub>...].test_<x>` (or a name inside one): a module pytest collects, not a helper."""
    parts = name.split(".")
    return len(parts) >= 3 and parts[0] == "tests" and any(part.startswith("test_") for part in parts[2:])


def imports_of_test_modules(source: str, package: str) -> list[str]:
    """Every module a source imports from that is a test module, at any depth (also inside functions)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
                names = [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
            else:
                names = [node.module or ""]
            found += [name for name in names if is_test_module(name)]
    return found


def test_the_check_sees_imports_of_test_modules_anywhere() -> None:
    source = (
        "from tests.e2e.test_grpc import Pki\n"
        "import tests.unit.security.test_authn_jwt\n"
        "def helper():\n"
        "    from tests.integration.test_work import offer\n"
        "    from .test_sibling import thing\n"
        "from tests.support.grpc_server import Pki\n"
    )
    assert imports_of_test_modules(source, "tests.e2e") == [
        "tests.e2e.test_grpc",
        "tests.unit.security.test_authn_jwt",
        "tests.integration.test_work",
        "tests.e2e.test_sibling",
    ]


def test_no_module_under_tests_imports_from_a_test_module() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        relative = path.relative_to(TESTS.parent)
        package = ".".join(relative.parent.parts)
        source = path.read_text(encoding="utf-8")
        offenders += [f"{relative}: {name}" for name in imports_of_test_modules(source, package)]
    assert offenders == [], "move the helper into tests/support and import it from there:\n" + "\n".join(offenders)
