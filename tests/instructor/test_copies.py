"""Student copies (nbgrader preprocessors) and the rendered book (Jupyter Book 1.x), read offline in Chromium."""
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from course_instructor.copies import SOLUTION_BEGIN, SOLUTION_END, build_book, course_notebooks, make_student_notebook
from course_instructor.copies import make_student_version as make_student_version_into
from lab_browser import chromium_page

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = course_notebooks(ROOT / "notebooks")
WITH_EXERCISES = [p for p in NOTEBOOKS if SOLUTION_BEGIN in p.read_text()]


def solution_lines(source: str) -> list[str]:
    """The non-blank lines strictly between the solution markers."""
    inside, lines = False, []
    for line in source.splitlines():
        if SOLUTION_BEGIN in line:
            inside = True
        elif SOLUTION_END in line:
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


def exercise_cells(notebook) -> list[tuple[int, int]]:
    """(solution cell, check cell) index pairs of a master notebook (student copies keep the indices).

    The check is the next code cell that calls a check_... function.
    """
    pairs = []
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and SOLUTION_BEGIN in cell.source:
            check = next(j for j, later in enumerate(notebook.cells) if j > i and later.cell_type == "code"
                         and re.search(r"\bcheck_\w+\(", later.source))
            pairs.append((i, check))
    return pairs


def execute_up_to(notebook, last_cell: int):
    """Run cells 0..last_cell in a fresh kernel (from the notebooks folder) and return the notebook."""
    partial = nbformat.v4.new_notebook(cells=[nbformat.from_dict(dict(c)) for c in notebook.cells[: last_cell + 1]],
                                       metadata=notebook.metadata)
    NotebookClient(partial, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    return partial


def output_text(cell) -> str:
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.get("outputs", []))


def test_there_are_exercises():
    assert len(WITH_EXERCISES) >= 3


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_student_copy_keeps_no_solution_and_no_output(path):
    master = nbformat.read(path, as_version=4)
    student = make_student_notebook(master)
    assert len(student.cells) == len(master.cells)
    text = nbformat.writes(student)
    assert SOLUTION_BEGIN not in text and SOLUTION_END not in text
    for master_cell, student_cell in zip(master.cells, student.cells):
        if SOLUTION_BEGIN in master_cell.source:
            assert "raise NotImplementedError()" in student_cell.source
            for line in solution_lines(master_cell.source):
                assert line not in student_cell.source.splitlines(), f"solution line survived: {line!r}"
        if student_cell.cell_type == "code":
            assert student_cell.outputs == [] and student_cell.execution_count is None


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_student_copy_runs_to_its_first_check_which_answers_kindly(path):
    master = nbformat.read(path, as_version=4)
    student = make_student_notebook(master)
    _, first_check = exercise_cells(master)[0]
    ran = execute_up_to(student, first_check)
    assert all(o.get("output_type") != "error" for c in ran.cells if c.cell_type == "code" for o in c.outputs)
    message = output_text(ran.cells[first_check])
    assert "not implemented yet" in message and "Traceback" not in message


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_restoring_the_solutions_makes_every_check_pass(path):
    master = nbformat.read(path, as_version=4)
    student = make_student_notebook(master)
    pairs = exercise_cells(master)
    for solution, _ in pairs:
        student.cells[solution].source = master.cells[solution].source
    ran = execute_up_to(student, pairs[-1][1])
    for _, check in pairs:
        message = output_text(ran.cells[check])
        assert "Well done" in message, f"check cell {check} said: {message!r}"


@pytest.fixture(scope="module")
def book_html(tmp_path_factory) -> Path:
    """The book built once for this module's tests; the folder holding index.html."""
    return build_book(ROOT / "notebooks", tmp_path_factory.mktemp("book") / "book")


def test_book_has_every_notebook_page_with_its_figures(book_html):
    html = book_html
    assert (html / "index.html").exists()
    for path in NOTEBOOKS:
        page = html / f"{path.stem}.html"
        assert page.exists(), f"no page for {path.name}"
        notebook = nbformat.read(path, as_version=4)
        figures = sum("image/png" in o.get("data", {})
                      for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
        shown = re.findall(r'<img [^>]*src="(_images/[^"]+\.png)"', page.read_text())
        assert len(shown) == figures, f"{path.name}: {figures} figures stored, {len(shown)} on the page"
        assert all((html / src).exists() for src in shown)
        assert "colab.research.google.com" in page.read_text()  # launch links


# What a formula looks like when MathJax has not typeset it.
RAW_MATH = ("\\(", "\\[", "$$")


def test_book_renders_its_formulas_offline(book_html):
    """Opened with no network, every course page shows typeset formulas, never raw LaTeX,
    in its text, its navigation and its title (MathJax ships with the book)."""
    pages = [book_html / "intro.html"] + [book_html / f"{path.stem}.html" for path in NOTEBOOKS]
    typeset = {}  # page name -> number of typeset formulas
    with chromium_page() as page:
        refused = []  # requests that would need the network
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else (refused.append(route.request.url), route.abort()))
        for html in pages:
            page.goto(html.as_uri())
            loaded = page.evaluate(
                "() => window.MathJax?.startup?.promise ? MathJax.startup.promise.then(() => true) : false")
            assert loaded, f"{html.name}: MathJax did not load without a network (refused: {refused})"
            assert page.locator(".math:not(:has(mjx-container))").count() == 0, f"{html.name}: formulas left untypeset"
            text = page.title() + "\n" + page.inner_text("body")
            raw = [line for line in text.splitlines() if any(mark in line for mark in RAW_MATH)]
            assert raw == [], f"{html.name} shows raw LaTeX: {raw}"
            typeset[html.name] = page.locator("mjx-container").count()
    assert typeset["01_distances.html"] > 0 and typeset["02_margin.html"] > 0, f"no typeset formula: {typeset}"


def test_committed_student_copies_are_current(tmp_path):
    """student/ (what the README's Colab links open) must equal a fresh student build."""
    fresh = {p.name: p for p in make_student_version_into(ROOT / "notebooks", tmp_path)}
    committed = {p.name: p for p in (ROOT / "student").glob("*.ipynb")}
    assert committed.keys() == fresh.keys(), "student/ is out of date: run make student-copies"
    for name, path in fresh.items():
        assert [c.source for c in nbformat.read(committed[name], as_version=4).cells] == \
            [c.source for c in nbformat.read(path, as_version=4).cells], \
            f"student/{name} is out of date: run make student-copies"
