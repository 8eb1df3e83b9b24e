"""No function of backend/ or model/ is longer than MAX_LINES lines, not counting its docstring."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backend", "model")
MAX_LINES = 60

Function = ast.FunctionDef | ast.AsyncFunctionDef


def function_length(node: Function) -> int:
    """Lines from the ``def`` line to the last line of the body, less the docstring's lines."""
    length = (node.end_lineno or node.lineno) - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        length -= (first.end_lineno or first.lineno) - first.lineno + 1
    return length


def function_lengths(source: str) -> list[tuple[int, str, int]]:
    """(line, name, length) of every function and method of a module, nested ones included."""
    return [(node.lineno, node.name, function_length(node)) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_lengths_count_from_def_to_the_last_line_without_the_docstring() -> None:
    source = '''
def short():
    """One line."""
    return 1


class Holder:
    async def method(self):
        """Two
        lines."""

        def inner():
            return 2

        return inner()


@decorated
def plain(x):
    y = x
    return y
'''
    assert sorted(function_lengths(source)) == [(2, "short", 2), (8, "method", 6), (12, "inner", 2), (19, "plain", 3)]


def test_no_function_is_longer_than_the_limit() -> None:
    too_long = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, name, length in function_lengths(path.read_text(encoding="utf-8")):
                if length > MAX_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}:{line}:{name} ({length} lines)")
    assert not too_long, f"functions longer than {MAX_LINES} lines (docstring excluded):\n" + "\n".join(too_long)
