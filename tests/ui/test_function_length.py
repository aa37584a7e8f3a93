"""The user interfaces stay thin: no function in ui/ is over 80 lines (a handler that grows
longer holds logic that belongs in search/ or indexer/, or a section that wants its own function)."""

from __future__ import annotations

import ast

from tests.conftest import REPO

MAX_LINES = 80


def test_no_function_in_ui_is_over_80_lines():
    files = sorted((REPO / "ui").rglob("*.py"))
    assert files
    too_long = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    too_long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert not too_long, "split these into smaller functions:\n" + "\n".join(too_long)
