"""The code's shape: no function in src/ longer than MAX_FUNCTION_LINES (issue #13)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# From the `def` line to the function's last line, both included (decorators not counted).
MAX_FUNCTION_LINES = 40


def long_functions(root: Path) -> list[str]:
    """Names every function or method under `root` longer than MAX_FUNCTION_LINES, with where it is."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_in_src_is_longer_than_40_lines() -> None:
    too_long = long_functions(SRC)
    assert not too_long, (
        f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps):\n" + "\n".join(too_long)
    )


def test_the_check_counts_from_def_to_last_line(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))
    (tmp_path / "fits.py").write_text(f"def fits():\n{body}\n")
    (tmp_path / "over.py").write_text(f"@decorated\ndef over():\n{body}\n    return None\n")
    assert long_functions(tmp_path) == [f"over.py:2 over ({MAX_FUNCTION_LINES + 1} lines)"]
