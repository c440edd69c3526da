"""The suite's own layout rule: test modules share code through `tests/helpers.py`, support modules
and fixtures, never by importing one another or a conftest (import-linter cannot express this)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> list[str]:
    """Every absolute module name that `path` imports, at any depth of its code."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def is_test_or_conftest(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return module.startswith("tests.") and (last.startswith("test_") or last == "conftest")


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("tests.bus.test_contract", True),
        ("tests.bot.conftest", True),
        ("tests.conftest", True),
        ("tests.helpers", False),
        ("tests.adapters.discord.harness", False),
        ("bus.test_tools", False),
    ],
)
def test_test_modules_and_conftests_are_recognised(module: str, expected: bool) -> None:
    assert is_test_or_conftest(module) is expected


def test_no_module_of_the_suite_imports_a_test_module_or_a_conftest() -> None:
    offences = [
        f"{path.relative_to(TESTS.parent)} imports {module}"
        for path in sorted(TESTS.rglob("*.py"))
        for module in imported_modules(path)
        if is_test_or_conftest(module)
    ]
    assert offences == []
