"""The helper code stays readable: size limits, and the learner's package apart from the instructor's."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("course_utils", "course_instructor")
MAX_FUNCTION_LINES, MAX_CLASS_LINES, MAX_CORE_LINES, MAX_TOTAL_LINES, MAX_LINE_LENGTH = 80, 250, 1200, 5500, 120


def _modules(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py"))


def _definitions(kind):
    for path in _modules(*PACKAGES):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, kind):
                yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1


def test_no_function_over_80_lines():
    long = {name: lines for name, lines in _definitions((ast.FunctionDef, ast.AsyncFunctionDef)) if lines > MAX_FUNCTION_LINES}
    assert long == {}, f"split these functions (lines each): {long}"


def test_no_class_over_250_lines():
    long = {name: lines for name, lines in _definitions(ast.ClassDef) if lines > MAX_CLASS_LINES}
    assert long == {}, f"split these classes (lines each): {long}"


def test_the_core_a_learner_reads_stays_short():
    lines = sum(len(path.read_text().splitlines()) for path in _modules("course_utils/core"))
    assert lines <= MAX_CORE_LINES, f"course_utils/core has {lines} lines (limit {MAX_CORE_LINES})"


def test_all_helper_code_stays_within_the_budget():
    """`wc -l` over every .py file of both packages (issue 18: at most 5,500 lines)."""
    lines = sum(len(path.read_text().splitlines()) for path in _modules(*PACKAGES))
    assert lines <= MAX_TOTAL_LINES, f"course_utils + course_instructor have {lines} lines (limit {MAX_TOTAL_LINES})"


def test_no_line_over_120_characters():
    """The line budget is not met by packing code into long lines."""
    long = [f"{path.relative_to(ROOT)}:{number}" for path in _modules(*PACKAGES)
            for number, line in enumerate(path.read_text().splitlines(), 1) if len(line) > MAX_LINE_LENGTH]
    assert long == [], f"lines over {MAX_LINE_LENGTH} characters: {long}"


@pytest.mark.parametrize("path", _modules("course_utils"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_learners_package_never_imports_the_instructors(path):
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert not {name for name in imported if name.split(".")[0] == "course_instructor"}
