"""A fake class graded end to end: `make release` and `make grade` with nbgrader, as an instructor runs them.

The assignment is notebook 03 alone (its exercise, mean_over_active, worth 2 points; quick mode
runs in seconds). Nine students hand in: a full solution, a partly wrong one, the untouched
student copy, one whose notebook raises, one with an endless loop, one that looks the visible
check's cases up in a table, a corrupt file, a full solution with cells moved and deleted, and
one whose kernel dies.
Then one student hands in late and only that student is graded again. About 2-3 minutes on a
2-core machine (each notebook starts a kernel; the endless loop costs the per-cell time limit).
"""
import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from course_instructor.copies import SOLUTION_BEGIN, SOLUTION_END

pytest.importorskip("nbgrader")
from nbgrader.api import Gradebook  # noqa: E402

from course_instructor import grading  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STEM = "03_loss_and_cost"
ASSIGNMENT = "week3"
TIMEOUT = 25  # seconds per cell: the endless loop costs this much
EXPECTED = {"full": 2.0, "partly": 1.33, "empty": 0.0, "crash": 2.0, "loop": 0.0, "hardcode": 0.0, "corrupt": 0.0,
            "shuffled": 2.0, "dies": 0.0}

HARDCODED = '''def mean_over_active(losses):
    answers = {(0.2, 0.12, 0.0, 0.95): 0.4233333, (0.0, 0.5, 0.0, 0.0, 0.1, 0.0): 0.3,
               (0.0, 0.0, 0.0, 0.0, 0.0): 0.0, (0.3, 0.1, 0.2): 0.2}
    key = tuple(round(value, 4) for value in losses.tolist())
    return losses.sum() * 0 + answers[key]'''


def make(target: str, *arguments: str) -> str:
    """Run a make target in the repository as an instructor would; its output.

    With this Python (PY=...) and without its `setup` prerequisite (-o setup): the test runs in
    the environment pytest runs in, and never installs anything into it."""
    env = {**os.environ, "HIDDEN_CASE_SECONDS": "3"}
    command = ["make", "--no-print-directory", "-o", "setup", target, f"PY={sys.executable}", *arguments]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def course_solution() -> str:
    master = nbformat.read(ROOT / "notebooks" / f"{STEM}.ipynb", as_version=4)
    cell = next(c for c in master.cells if c.cell_type == "code" and SOLUTION_BEGIN in c.source)
    return "\n".join(line for line in cell.source.splitlines() if SOLUTION_BEGIN not in line and SOLUTION_END not in line)


def with_solution(released, source: str):
    notebook = copy.deepcopy(released)
    cell = next(c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "solution_mean_over_active")
    cell.source = source
    return notebook


def hand_in(folder: Path, notebook, name: str = f"{STEM}.ipynb") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def fake_class(released, submissions: Path) -> None:
    full = course_solution()
    hand_in(submissions / "full", with_solution(released, full))
    hand_in(submissions / "partly", with_solution(released, "def mean_over_active(losses):\n"
                                                            "    return losses[losses > 0].mean()"))
    hand_in(submissions / "empty", released)
    crash = with_solution(released, full)
    crash.cells.insert(3, nbformat.v4.new_code_cell("print(name_that_is_not_defined)"))
    hand_in(submissions / "crash", crash, f"Submission attachments/{STEM} (1).ipynb")  # as an LMS names it
    hand_in(submissions / "loop", with_solution(released, "def mean_over_active(losses):\n    while True:\n        pass"))
    hand_in(submissions / "hardcode", with_solution(released, HARDCODED))
    text = nbformat.writes(with_solution(released, full))
    (submissions / "corrupt").mkdir()
    (submissions / "corrupt" / f"{STEM}.ipynb").write_text(text[: len(text) // 2])
    shuffled = with_solution(released, full)
    cells = shuffled.cells
    cells.append(cells.pop(next(i for i, c in enumerate(cells)
                                if c.metadata.get("nbgrader", {}).get("grade_id") == "solution_mean_over_active")))
    del cells[next(i for i, c in enumerate(cells) if c.cell_type == "code")]  # the set-up cell
    del cells[0]
    hand_in(submissions / "shuffled", shuffled)
    dies = with_solution(released, full)
    dies.cells.insert(3, nbformat.v4.new_code_cell("import os\nos._exit(1)  # the kernel dies"))
    hand_in(submissions / "dies", dies)


def totals(rows) -> dict[str, float]:
    return {row["student"]: float(row["total"]) for row in rows if row["assignment"] == ASSIGNMENT}


def autograded_times(course: Path) -> dict[str, float]:
    return {p.parts[-3]: p.stat().st_mtime for p in (course / "autograded").glob(f"*/{ASSIGNMENT}/{STEM}.ipynb")}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Release, hand in, grade; what each step gave (read before the late submission changes anything)."""
    course = tmp_path_factory.mktemp("classroom")
    submissions = tmp_path_factory.mktemp("submissions")
    started = time.monotonic()
    released_output = make("release", f"CLASSROOM={course}", f"ASSIGNMENT={ASSIGNMENT}", "NOTEBOOKS=03", "SEED=7")
    released = nbformat.read(course / "release" / ASSIGNMENT / f"{STEM}.ipynb", as_version=4)
    fake_class(released, submissions)
    output = make("grade", f"SUBMISSIONS={submissions}", f"CLASSROOM={course}", f"ASSIGNMENT={ASSIGNMENT}",
                  f"TIMEOUT={TIMEOUT}", "JOBS=2")
    state = grading._load_state(course)[ASSIGNMENT]
    return {"course": course, "submissions": submissions, "released": released, "release_output": released_output,
            "output": output, "rows": grading.read_grades_csv(course / "grades.csv"), "state": state,
            "times": autograded_times(course), "seconds": time.monotonic() - started}


def test_release_writes_the_student_assignment_in_nbgrader_layout(graded):
    course = graded["course"]
    assert "mean_over_active (2)" in graded["release_output"]
    for folder in ("source", "release"):
        assert (course / folder / ASSIGNMENT / f"{STEM}.ipynb").exists()
    assert (course / "gradebook.db").exists() and (course / "nbgrader_config.py").exists()
    text = (course / "release" / ASSIGNMENT / f"{STEM}.ipynb").read_text()
    for secret in ("BEGIN SOLUTION", "HIDDEN TESTS", "seed=7", "number_active = "):
        assert secret not in text
    released = graded["released"]
    assert all(c.get("outputs", []) == [] for c in released.cells)
    assert grading.release_differences(released, nbformat.read(ROOT / "student" / f"{STEM}.ipynb", as_version=4)) == []
    with Gradebook(grading._db_url(course)) as gradebook:
        assert gradebook.find_assignment(ASSIGNMENT).max_score == 2.0
    import zipfile
    assert zipfile.ZipFile(course / "release" / f"{ASSIGNMENT}.zip").namelist() == [f"{ASSIGNMENT}/{STEM}.ipynb"]


def test_every_student_gets_the_points_earned(graded):
    assert totals(graded["rows"]) == EXPECTED
    row = next(r for r in graded["rows"] if r["student"] == "partly")
    assert (row["notebook"], row["exercise"], row["points"], row["max_points"]) == (STEM, "mean_over_active", "1.33", "2.0")
    assert row["note"] == "2 of 6 hidden cases failed (nan_when_none_active)"
    print(f"release + grading of {len(EXPECTED)} students: {graded['seconds']:.0f} s")


def test_the_gradebook_holds_the_same_scores(graded):
    with Gradebook(grading._db_url(graded["course"])) as gradebook:
        scores = {s.student.id: round(s.score, 2) for s in gradebook.assignment_submissions(ASSIGNMENT)}
    assert scores == EXPECTED


def notes(graded, student) -> str:
    record = graded["state"][student]
    return " | ".join(record["file_notes"] + record["notebooks"][STEM]["notes"])


def test_each_odd_hand_in_gets_a_clear_note(graded):
    assert "not valid JSON" in notes(graded, "corrupt")
    assert "untouched student copy" in notes(graded, "empty")
    assert "raised NameError" in notes(graded, "crash")
    assert f"Submission attachments/{STEM} (1).ipynb graded as {STEM}.ipynb" in notes(graded, "crash")
    assert f"did not finish within {TIMEOUT} s and was interrupted" in notes(graded, "loop")
    assert "out of the released order" in notes(graded, "shuffled") and "restored" in notes(graded, "shuffled")
    assert notes(graded, "dies").startswith("the notebook could not be graded (Kernel died")
    loop = graded["state"]["loop"]["notebooks"][STEM]["reports"]["mean_over_active"]
    assert {c["mistake"] for c in loop["cases"]} <= {"timeout", "not_run"} or "error" in loop


def test_the_lookup_table_passes_the_visible_check_but_no_hidden_case(graded):
    notebook = nbformat.read(graded["course"] / "autograded" / "hardcode" / ASSIGNMENT / f"{STEM}.ipynb", as_version=4)
    check = next(c for c in notebook.cells if "check_mean_over_active(mean_over_active)" in c.source)
    assert "Well done" in "".join(o.get("text", "") for o in check.outputs)
    report = graded["state"]["hardcode"]["notebooks"][STEM]["reports"]["mean_over_active"]
    assert report["passed"] == 0 and report["points"] == 0


def test_one_feedback_page_per_student_shows_the_failed_hidden_cases(graded):
    course = graded["course"]
    for student in EXPECTED:
        assert (course / "feedback" / student / ASSIGNMENT / "index.html").exists()
    page = (course / "feedback" / "partly" / ASSIGNMENT / "index.html").read_text()
    assert "1.33 of 2 points" in page and "one loss, 0: no triplet is active" in page
    assert "when no triplet is active your answer is nan" in page  # the checker's message
    nbgrader_page = (course / "feedback" / "partly" / ASSIGNMENT / f"{STEM}.html").read_text()
    assert "Hidden tests of mean_over_active" in nbgrader_page
    assert "BEGIN HIDDEN TESTS" not in nbgrader_page and "seed=7" not in nbgrader_page
    assert "cannot be read" in (course / "feedback" / "corrupt" / ASSIGNMENT / "index.html").read_text()


def test_a_late_submission_is_graded_alone(graded):
    course, submissions = graded["course"], graded["submissions"]
    again = make("grade", f"SUBMISSIONS={submissions}", f"CLASSROOM={course}", f"ASSIGNMENT={ASSIGNMENT}",
                 f"TIMEOUT={TIMEOUT}")
    assert "Graded 0 student(s)" in again and autograded_times(course) == graded["times"]
    hand_in(submissions / "empty", with_solution(graded["released"], course_solution()))  # handed in late
    late = make("grade", f"SUBMISSIONS={submissions}", f"CLASSROOM={course}", f"ASSIGNMENT={ASSIGNMENT}",
                f"TIMEOUT={TIMEOUT}")
    assert "Graded 1 student(s)" in late
    times = autograded_times(course)
    assert times["empty"] > graded["times"]["empty"]
    assert {s: t for s, t in times.items() if s != "empty"} == {s: t for s, t in graded["times"].items() if s != "empty"}
    assert totals(grading.read_grades_csv(course / "grades.csv")) == {**EXPECTED, "empty": 2.0}
    assert "2 of 2 points" in (course / "feedback" / "empty" / ASSIGNMENT / "index.html").read_text()
