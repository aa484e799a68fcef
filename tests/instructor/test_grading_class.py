"""A fake class graded end to end: `make release` and `make grade` with nbgrader, as an instructor runs them.

The release holds every notebook with an exercise; the students hand in notebook 03 (its exercise,
mean_over_active, is worth 2 points; quick mode runs it in seconds) or nothing: a full solution, a partly
wrong one, one whose notebook raises, one whose kernel dies, a corrupt file, one with graded cells moved,
and one who hands in nothing. About a minute on a 2-core machine (each graded notebook starts a kernel).
"""
import copy
import csv
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from course_instructor.copies import SOLUTION_BEGIN, SOLUTION_END

pytest.importorskip("nbgrader")
from nbgrader.api import Gradebook  # noqa: E402

from course_instructor import grading  # noqa: E402
from course_instructor.hidden_tests import DEFAULT_POINTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STEM = "03_loss_and_cost"
ASSIGNMENT = "week3"
EXPECTED = {"full": 2.0, "partly": 1.33, "crash": 2.0, "dies": 0.0, "corrupt": 0.0, "moved": 0.0, "nothing": 0.0}


def make(target: str, *arguments: str) -> str:
    """Run a make target as an instructor would, with this Python and without its `setup` prerequisite
    (-o setup), so that nothing is installed; its output."""
    command = ["make", "--no-print-directory", "-o", "setup", target, f"PY={sys.executable}", *arguments]
    result = subprocess.run(command, cwd=ROOT, env=os.environ, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def with_solution(released, source: str):
    notebook = copy.deepcopy(released)
    next(c for c in notebook.cells if grading._grade_id(c) == "solution_mean_over_active").source = source
    return notebook


def hand_in(folder: Path, notebook, name: str = f"{STEM}.ipynb") -> None:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, folder / name)


def fake_class(released, submissions: Path) -> None:
    master = nbformat.read(ROOT / "notebooks" / f"{STEM}.ipynb", as_version=4)
    full = "\n".join(line for line in next(c for c in master.cells if SOLUTION_BEGIN in c.source).source.splitlines()
                     if SOLUTION_BEGIN not in line and SOLUTION_END not in line)
    hand_in(submissions / "full", with_solution(released, full))
    hand_in(submissions / "partly", with_solution(released, "def mean_over_active(losses):\n"
                                                            "    return losses[losses > 0].mean()"))
    crash = with_solution(released, full)
    crash.cells.insert(3, nbformat.v4.new_code_cell("print(name_that_is_not_defined)"))
    hand_in(submissions / "crash", crash, f"Submission attachments/{STEM} (1).ipynb")  # as an LMS names it
    dies = with_solution(released, full)
    dies.cells.insert(3, nbformat.v4.new_code_cell("import os\nos._exit(1)  # the kernel dies"))
    hand_in(submissions / "dies", dies)
    text = nbformat.writes(with_solution(released, full))
    (submissions / "corrupt").mkdir()
    (submissions / "corrupt" / f"{STEM}.ipynb").write_text(text[: len(text) // 2])
    moved = with_solution(released, full)
    moved.cells.append(moved.cells.pop(next(i for i, c in enumerate(moved.cells) if grading._grade_id(c))))
    hand_in(submissions / "moved", moved)
    (submissions / "nothing").mkdir()
    (submissions / "nothing" / "notes.txt").write_text("I forgot")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Release, hand in, grade; what each step gave."""
    course, submissions = tmp_path_factory.mktemp("classroom"), tmp_path_factory.mktemp("submissions")
    released_output = make("release", f"CLASSROOM={course}", f"ASSIGNMENT={ASSIGNMENT}", "SEED=7")
    released = nbformat.read(course / "release" / ASSIGNMENT / f"{STEM}.ipynb", as_version=4)
    fake_class(released, submissions)
    output = make("grade", f"SUBMISSIONS={submissions}", f"CLASSROOM={course}", f"ASSIGNMENT={ASSIGNMENT}",
                  "TIMEOUT=60")
    with (course / "grades.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return {"course": course, "released": released, "release_output": released_output, "output": output,
            "rows": rows, "notes": {row["student"]: row["note"] for row in rows if row["notebook"] == STEM}}


def test_release_writes_the_student_assignment_in_nbgrader_layout(graded):
    course, released = graded["course"], graded["released"]
    assert f"{STEM}: mean_over_active (2)" in graded["release_output"]
    names = sorted(p.name for p in (course / "release" / ASSIGNMENT).glob("*.ipynb"))
    assert len(names) >= 6 and "09_more_than_one_gpu.ipynb" not in names
    assert zipfile.ZipFile(course / "release" / f"{ASSIGNMENT}.zip").namelist() == [f"{ASSIGNMENT}/{n}" for n in names]
    text = (course / "release" / ASSIGNMENT / f"{STEM}.ipynb").read_text()
    for secret in ("BEGIN SOLUTION", "HIDDEN TESTS", "seed=7", "number_active = "):
        assert secret not in text
    assert all(c.get("outputs", []) == [] for c in released.cells)
    student = nbformat.read(ROOT / "student" / f"{STEM}.ipynb", as_version=4)
    assert [c.source for c in released.cells if not c.get("id", "").startswith(grading.TEST_CELL_PREFIX)] == \
        [c.source for c in student.cells]  # the committed student copy, plus the comment-only test cell
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        assert gradebook.find_assignment(ASSIGNMENT).max_score == sum(DEFAULT_POINTS.values())


def test_every_student_gets_the_points_earned_in_the_csv_and_the_gradebook(graded):
    totals = {row["student"]: float(row["total"]) for row in graded["rows"]}
    assert totals == EXPECTED
    assert {float(row["max_total"]) for row in graded["rows"]} == {sum(DEFAULT_POINTS.values())}
    assert len(graded["rows"]) == len(EXPECTED) * len(DEFAULT_POINTS)
    row = next(r for r in graded["rows"] if r["student"] == "partly" and r["notebook"] == STEM)
    assert (row["exercise"], row["points"], row["max_points"]) == ("mean_over_active", "1.33", "2.0")
    with Gradebook(f"sqlite:///{graded['course'] / 'gradebook.db'}") as gradebook:
        assert {s.student.id: s.score for s in gradebook.assignment_submissions(ASSIGNMENT)} == EXPECTED


def test_each_hand_in_gets_a_clear_note(graded):
    notes = graded["notes"]
    assert notes["full"] == "all hidden cases passed"
    assert notes["partly"] == "1 of 3 hidden cases failed (nan_when_none_active)"
    assert notes["crash"].startswith("all hidden cases passed; graded the file 03_loss_and_cost (1).ipynb; cell 4")
    assert "raised NameError" in notes["crash"]
    assert notes["dies"].startswith("the notebook could not be graded (Kernel died")
    assert notes["dies"].endswith(grading.BY_HAND)
    assert notes["corrupt"].startswith(f"{STEM}.ipynb cannot be read (") and "ask for it again" in notes["corrupt"]
    assert notes["moved"] == f"graded cells were deleted, moved or duplicated: {grading.BY_HAND}"
    assert notes["nothing"] == "not handed in"
    assert graded["output"].count("graded as") == len(EXPECTED)


def test_nbgrader_feedback_shows_the_hidden_results_but_not_their_code(graded):
    page = (graded["course"] / "feedback" / "partly" / ASSIGNMENT / f"{STEM}.html").read_text()
    assert "Hidden tests of mean_over_active" in page and "when no triplet is active" in page
    assert "BEGIN HIDDEN TESTS" not in page and "seed=7" not in page
