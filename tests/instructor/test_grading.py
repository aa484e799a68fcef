"""Classroom grading, the fast parts: the hidden cases (course_instructor.hidden_tests) and the steps of
course_instructor.grading that need no nbgrader run (source notebooks, matching and reading hand-ins, the
CSV notes). tests/instructor/test_grading_class.py grades a fake class end to end with nbgrader."""
import copy
import math
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from course_utils import valid_triplet_mask
from course_utils.checks import basics as checks
from course_utils.checks import diagnosis as checks_diagnosis
from course_utils.checks import masks as checks_masks
from course_utils.checks import recognition as checks_recognition
from course_instructor.copies import SOLUTION_BEGIN, course_notebooks, make_student_notebook
from course_instructor.hidden_tests import (
    DEFAULT_POINTS,
    EXERCISES,
    RESULT_MIME,
    grade,
    hidden_cases,
    report_text,
    run_hidden_cases,
)
from learner_steps import (  # mistaken training steps, as learners write them
    encodes_again_after_the_step,
    no_backward,
    no_step,
    no_zero_grad,
    returns_only_the_loss,
    returns_them_swapped,
)

pytest.importorskip("nbgrader")
from course_instructor import grading  # noqa: E402 - needs nbgrader's package only for the gradebook parts

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = [p for p in course_notebooks(ROOT / "notebooks") if SOLUTION_BEGIN in p.read_text()]
SEEDS = (0, 1234, 987_654_321)


def solutions() -> dict:
    """The course's own solution of every exercise, run from the notebooks' solution cells."""
    found = {}
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code" and SOLUTION_BEGIN in cell.source:
                namespace = {"torch": torch, "math": math, "F": F, "valid_triplet_mask": valid_triplet_mask}
                exec(cell.source, namespace)  # noqa: S102 - the course's own notebooks
                name = re.search(r"def (\w+)\(", cell.source).group(1)
                found[name] = namespace[name]
    return found


SOLUTIONS = solutions()
# The visible check's Exercise of each exercise whose mistakes are Mistake objects.
VISIBLE = {
    "distance_matrix": checks.DISTANCE_MATRIX,
    "triplet_loss": checks.TRIPLET_LOSS,
    "mean_over_active": checks.MEAN_OVER_ACTIVE,
    "valid_triplet_mask": checks_masks.VALID_TRIPLET_MASK,
    "semihard_mask": checks_masks.SEMIHARD_MASK,
    "verify": checks_recognition.VERIFY,
    "error_rates": checks_recognition.ERROR_RATES,
    "name_the_failure": checks_diagnosis.EXERCISE,
}


def failed_mistakes(report) -> set:
    return {case["mistake"] for case in report["cases"] if not case["passed"]}


# The hidden cases.


def test_every_exercise_of_the_notebooks_has_hidden_cases_and_points():
    names = [name for path in NOTEBOOKS for name, _, _ in grading.find_exercises(nbformat.read(path, as_version=4))]
    assert sorted(names) == sorted(SOLUTIONS) and len(names) == len(set(names)) >= 9
    assert set(names) == set(EXERCISES) == set(DEFAULT_POINTS)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_course_solution_passes_every_hidden_case(name, seed):
    report = run_hidden_cases(name, SOLUTIONS[name], seed=seed, points=3)
    assert report["passed"] == len(report["cases"]) >= 3, report_text(report)
    assert report["points"] == 3.0


def first_arguments(name, seed):
    """The arguments the first hidden case of an exercise gives the learner's function."""
    seen = []

    def spy(*args):
        seen.append([a.clone() if isinstance(a, torch.Tensor) else a for a in args])
        return SOLUTIONS[name](*args)

    hidden_cases(name, seed)[0][1](spy)
    return seen[0]


@pytest.mark.parametrize("name", ["distance_matrix", "triplet_loss", "mean_over_active", "verify"])
def test_the_seed_draws_the_random_cases(name):
    same = [torch.equal(a, b) for a, b in zip(first_arguments(name, 5), first_arguments(name, 5))
            if isinstance(a, torch.Tensor)]
    other = [torch.equal(a, b) for a, b in zip(first_arguments(name, 5), first_arguments(name, 6))
             if isinstance(a, torch.Tensor)]
    assert all(same) and not all(other)


def mistaken(mistake):
    """A learner's function that makes the mistake (its answer in float32, as learners compute)."""
    def function(*args):
        out = mistake.compute(*args)
        if isinstance(out, tuple):
            return tuple(o.float() if isinstance(o, torch.Tensor) and o.is_floating_point() else o for o in out)
        return out.float() if isinstance(out, torch.Tensor) and out.is_floating_point() else out
    return function


MISTAKES = [(name, mistake) for name, exercise in VISIBLE.items() for mistake in exercise.mistakes]


@pytest.mark.parametrize(("name", "mistake"), MISTAKES, ids=[f"{n}-{m.name}" for n, m in MISTAKES])
def test_each_mistake_the_visible_check_names_loses_points_and_is_named(name, mistake):
    report = run_hidden_cases(name, mistaken(mistake), seed=1234, points=3)
    assert report["points"] < 3, f"{mistake.name} passes every hidden case"
    assert mistake.name in failed_mistakes(report), (mistake.name, failed_mistakes(report))


@pytest.mark.parametrize(("step", "mistake"), [
    (no_zero_grad, "forgot_zero_grad"), (no_step, "no_step"), (no_backward, "no_backward"),
    (returns_only_the_loss, "returned_only_loss"), (returns_them_swapped, "wrong_return"),
    (encodes_again_after_the_step, "wrong_return"),
])
def test_training_step_mistakes_lose_points_and_are_named(step, mistake):
    report = run_hidden_cases("training_step", step, seed=3, points=3)
    assert report["points"] == 0 and failed_mistakes(report) == {mistake}, report_text(report)


def _key(args) -> str:
    return repr([(tuple(a.shape), a.detach().flatten().tolist()) if isinstance(a, torch.Tensor) else a for a in args])


@pytest.mark.parametrize("name", sorted(VISIBLE))
def test_a_lookup_table_of_the_visible_cases_scores_0(name):
    """What a learner who copies the visible check's answers writes: a table of its cases, KeyError otherwise."""
    exercise = VISIBLE[name]
    table = {_key(case.args): exercise.expected(*case.args) for case in exercise.cases}

    def function(*args):
        answer = table[_key(args)]
        if not (isinstance(answer, torch.Tensor) and answer.is_floating_point()):
            return answer
        floats = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
        return answer.float() + (floats[0].sum() * 0 if floats else 0)  # attached to the inputs' graph

    assert function(*exercise.cases[0].args) is not None  # the table answers the visible cases
    assert run_hidden_cases(name, function, seed=1234, points=3)["points"] == 0


def test_grade_shows_text_and_json_and_returns_partial_credit(capsys):
    def nan_when_none_active(losses):
        return losses[losses > 0].mean()

    points = grade("mean_over_active", nan_when_none_active, points=2, seed=7)
    shown = capsys.readouterr().out
    assert shown.startswith("Hidden tests of mean_over_active: 2 of 3 cases passed, 1.33 of 2 points.")
    assert points == 1.33
    assert "FAILED  one loss, 0: no triplet is active" in shown and "when no triplet is active" in shown
    assert RESULT_MIME.startswith("application/") and RESULT_MIME.endswith("+json")


def test_a_function_that_is_missing_or_raises_or_exits_scores_0():
    missing = run_hidden_cases("verify", None, seed=1, points=2)
    assert missing["points"] == 0 and failed_mistakes(missing) == {"not_defined"}
    assert "is not defined" in missing["cases"][0]["message"]

    def exits(*args):
        raise SystemExit(3)

    exited = run_hidden_cases("verify", exits, seed=1, points=2)
    assert exited["points"] == 0 and "SystemExit" in exited["cases"][0]["message"]

    def stub(*args):
        raise NotImplementedError()

    report = run_hidden_cases("verify", stub, seed=1, points=2)
    assert failed_mistakes(report) == {"not_implemented"}
    assert report_text(report).count("not implemented yet") == 1  # one message for all cases


def test_hidden_cases_write_nothing_to_stderr(capfd):
    def noisy(x):
        import warnings
        warnings.warn("a learner's warning")
        print("debug", file=sys.stderr)
        return SOLUTIONS["distance_matrix"](x)

    assert run_hidden_cases("distance_matrix", noisy, seed=2, points=3)["points"] == 3
    assert capfd.readouterr().err == ""  # nbgrader gives a grade cell with stderr output 0 points


def test_an_unknown_exercise_is_named():
    with pytest.raises(KeyError, match="no hidden tests for the exercise 'nope'"):
        hidden_cases("nope", 1)


def test_the_learners_import_loads_neither_nbgrader_nor_the_grader():
    code = ("import sys, course_utils, course_utils.checks.basics, course_instructor.hidden_tests; "
            "print('nbgrader' in sys.modules, 'course_instructor.grading' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# The source (instructor) version and what students get from it.


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_source_version_marks_each_exercise_for_nbgrader(path):
    master = nbformat.read(path, as_version=4)
    source, items = grading.make_source_notebook(master, seed=11)
    exercises = grading.find_exercises(master)
    assert [name for name, _ in items] == [name for name, _, _ in exercises]
    assert len(source.cells) == len(master.cells) + len(exercises)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): (i, c) for i, c in enumerate(source.cells)}
    for name, points in items:
        solution_at, solution = by_id[f"solution_{name}"]
        check_at, check = by_id[f"check_{name}"]
        test_at, test = by_id[f"hidden_tests_{name}"]
        assert solution.metadata.nbgrader["solution"] and not solution.metadata.nbgrader["locked"]
        assert check.metadata.nbgrader["locked"] and not check.metadata.nbgrader["grade"]
        assert test.metadata.nbgrader["grade"] and test.metadata.nbgrader["locked"]
        assert test.metadata.nbgrader["points"] == points == DEFAULT_POINTS[name]
        assert solution_at < check_at < test_at == check_at + 1
        hidden = test.source.split(grading.HIDDEN_BEGIN)[1].split(grading.HIDDEN_END)[0]
        assert f"grade({name!r}, globals().get({name!r}), points={float(points)!r}, seed=11)" in hidden
    assert nbformat.writes(master) == nbformat.writes(nbformat.read(path, as_version=4))  # input unchanged


@pytest.mark.parametrize("path", NOTEBOOKS[:3], ids=lambda p: p.stem)
def test_students_get_the_student_copy_plus_a_comment_after_each_check(path):
    master = nbformat.read(path, as_version=4)
    released = make_student_notebook(grading.make_source_notebook(master, seed=1)[0])  # as generate_assignment
    tests = [c for c in released.cells if c.get("id", "").startswith(grading.TEST_CELL_PREFIX)]
    assert tests and all(line.startswith("#") for c in tests for line in c.source.splitlines() if line.strip())
    assert [c.source.rstrip() for c in released.cells if c not in tests] == \
        [c.source.rstrip() for c in make_student_notebook(master).cells]


def test_a_solution_cell_without_a_check_is_refused():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"{SOLUTION_BEGIN}\ndef f(x):\n    return x")])
    with pytest.raises(grading.GradingError, match="a later cell calling check_"):
        grading.find_exercises(notebook)


# Collecting and reading hand-ins.


def test_matching_files_in_a_student_folder(tmp_path):
    stems = ["01_distances", "03_loss_and_cost", "04_mining"]
    (tmp_path / "Submission attachments").mkdir()
    (tmp_path / "Submission attachments" / "03_loss_and_cost (1).ipynb").write_text("{}")
    (tmp_path / "01_distances.ipynb").write_text("{}")
    (tmp_path / "01_distances-copy.ipynb").write_text("{}")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "04_mining-checkpoint.ipynb").write_text("{}")
    assert grading.match_files(tmp_path, stems) == {
        "01_distances": tmp_path / "01_distances.ipynb",
        "03_loss_and_cost": tmp_path / "Submission attachments" / "03_loss_and_cost (1).ipynb",
        "04_mining": None}


def test_student_ids_from_folder_names():
    assert grading.student_id("Ada Lovelace (ada@uni.edu)") == "Ada_Lovelace__ada@uni.edu"
    assert grading.student_id("bob") == "bob" and grading.student_id("../..") == "student"


@pytest.fixture(scope="module")
def released():
    master = nbformat.read(ROOT / "notebooks" / "03_loss_and_cost.ipynb", as_version=4)
    return make_student_notebook(grading.make_source_notebook(master, seed=1)[0])


def hand_in(tmp_path, released, text=None, name="03_loss_and_cost.ipynb"):
    """Grade one hand-in that never reaches nbgrader (it returns before any autograde)."""
    path = tmp_path / "ada" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(nbformat.writes(released) if text is None else text)
    return grading._grade_notebook(tmp_path, "week", "ada", "03_loss_and_cost", path, released, timeout=5)


def test_missing_unreadable_and_rearranged_hand_ins_score_0_with_a_note(tmp_path, released):
    missing = grading._grade_notebook(tmp_path, "week", "ada", "03_loss_and_cost", None, released, timeout=5)
    assert missing == {"notes": ["not handed in"], "reports": {}}
    text = nbformat.writes(released)
    for broken in (text[: len(text) // 2], "\xff garbage", '{"cells": [{"cell_type": "spreadsheet"}]}'):
        result = hand_in(tmp_path, released, broken, "03_loss_and_cost (1).ipynb")
        assert result["reports"] == {} and result["notes"][0] == "graded the file 03_loss_and_cost (1).ipynb"
        assert "cannot be read" in result["notes"][1] and "ask for it again" in result["notes"][1]
    moved = copy.deepcopy(released)
    moved.cells.append(moved.cells.pop(next(i for i, c in enumerate(moved.cells) if grading._grade_id(c))))
    result = hand_in(tmp_path, released, nbformat.writes(moved))
    assert result == {"notes": [f"graded cells were deleted, moved or duplicated: {grading.BY_HAND}"], "reports": {}}
    assert not (tmp_path / "submitted").exists()


def test_reading_an_autograded_notebook(tmp_path):
    report = run_hidden_cases("mean_over_active", lambda losses: losses[losses > 0].mean(), seed=3, points=2)
    cells = [nbformat.v4.new_code_cell("x = 1\nprint(y)"), nbformat.v4.new_code_cell("while True: pass"),
             nbformat.v4.new_code_cell("grade(...)"), nbformat.v4.new_code_cell("grade(...)")]
    cells[0].outputs = [nbformat.v4.new_output("error", ename="NameError", evalue="name 'y' is not defined")]
    cells[1].outputs = [nbformat.v4.new_output("error", ename=grading.TIMEOUT_ERROR, evalue="")]
    cells[2].outputs = [nbformat.v4.new_output("display_data", data={RESULT_MIME: report})]
    cells[3].outputs = [nbformat.v4.new_output("error", ename="KeyboardInterrupt", evalue="")]
    for cell, name in zip(cells[2:], ["mean_over_active", "verify"]):
        cell.metadata["nbgrader"] = {"grade_id": f"hidden_tests_{name}"}
    nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / "graded.ipynb")
    reports, notes = grading.read_graded(tmp_path / "graded.ipynb", timeout=25)
    assert notes == ["cell 1 ('x = 1') raised NameError: name 'y' is not defined",
                     "cell 2 ('while True: pass') did not finish within 25 s"]
    assert reports == {"mean_over_active": report,
                       "verify": {"error": "the hidden tests of verify raised KeyboardInterrupt: "}}
    assert grading._note({"reports": reports, "notes": notes[:1]}, "mean_over_active") == \
        "1 of 3 hidden cases failed (nan_when_none_active); cell 1 ('x = 1') raised NameError: name 'y' is not defined"
    assert grading._note({"reports": reports, "notes": []}, "verify").startswith("the hidden tests of verify raised")
    assert grading._note({"reports": {}, "notes": ["not handed in"]}, "verify") == "not handed in"


@pytest.mark.parametrize(("status", "output", "why"), [
    (None, "", "stopped after 135 s"),
    (1, "[AutogradeApp | ERROR] Kernel died while waiting for execute reply.\n[AutogradeApp | ERROR] more",
     "Kernel died while waiting for execute reply."),
    (1, "something else", "exit status 1"),
])
def test_a_notebook_nbgrader_could_not_grade_scores_0_with_a_note(tmp_path, released, monkeypatch, status, output, why):
    calls = []
    monkeypatch.setattr(grading, "run_nbgrader", lambda *args, **kwargs: calls.append(args) or (status, output))
    result = hand_in(tmp_path, released)
    assert result == {"notes": [f"the notebook could not be graded ({why}): {grading.BY_HAND}"], "reports": {}}
    assert calls[0][0][:4] == ["autograde", "week", "--student", "ada"]
    assert (tmp_path / "submitted" / "ada" / "week" / "03_loss_and_cost.ipynb").exists()
