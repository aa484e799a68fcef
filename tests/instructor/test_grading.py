"""Classroom grading, the fast parts: the hidden cases (course_instructor.hidden_tests) and the steps of
course_instructor.grading that need no nbgrader run (source notebooks, reassembling hand-ins, reading
files). tests/test_grading_class.py grades a fake class end to end with nbgrader."""
import copy
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from course_utils import valid_triplet_mask

from course_utils.checks import basics as checks

from course_utils.checks import masks as checks_data
from course_utils.checks import diagnosis as checks_diagnosis
from course_utils.checks import recognition as checks_recognition
from course_instructor.hidden_tests import (
    DEFAULT_POINTS,
    EXERCISES,
    RESULT_MIME,
    grade,
    hidden_cases,
    report_from_json,
    run_hidden_cases,
)
from course_instructor.copies import SOLUTION_BEGIN, course_notebooks, make_student_notebook
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
    "valid_triplet_mask": checks_data.VALID_TRIPLET_MASK,
    "semihard_mask": checks_data.SEMIHARD_MASK,
    "verify": checks_recognition.VERIFY,
    "error_rates": checks_recognition.ERROR_RATES,
    "name_the_failure": checks_diagnosis.EXERCISE,
}
CHECKS = {
    "distance_matrix": checks.check_distance_matrix,
    "triplet_loss": checks.check_triplet_loss,
    "mean_over_active": checks.check_mean_over_active,
    "valid_triplet_mask": checks_data.check_valid_triplet_mask,
    "semihard_mask": checks_data.check_semihard_mask,
    "verify": checks_recognition.check_verify,
    "error_rates": checks_recognition.check_error_rates,
    "name_the_failure": checks_diagnosis.check_name_the_failure,
}
# Where the checker names a mistake by another name on the hidden cases (its axis test comes first).
ALIASES = {"positive_and_negative_swapped": "axes_swapped"}


# ---------------------------------------------------------------------------
# The hidden cases.


def test_every_exercise_of_the_notebooks_has_hidden_cases_and_points():
    names = [e.name for path in NOTEBOOKS for e in grading.find_exercises(nbformat.read(path, as_version=4))]
    assert sorted(names) == sorted(SOLUTIONS) and len(names) == len(set(names)) >= 9
    assert set(names) <= set(EXERCISES) and set(names) <= set(DEFAULT_POINTS)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_course_solution_passes_every_hidden_case(name, seed):
    report = run_hidden_cases(name, SOLUTIONS[name], seed=seed, points=3)
    assert report.passed == len(report.outcomes) >= 3, report.text()
    assert report.points == 3.0


def first_arguments(name, seed):
    """The arguments the first hidden case of an exercise gives the learner's function."""
    seen = []

    def spy(*args):
        seen.append([a.clone() if isinstance(a, torch.Tensor) else a for a in args])
        return SOLUTIONS[name](*args)

    hidden_cases(name, seed)[0].judge(spy)
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
    assert report.points < 3, f"{mistake.name} passes every hidden case"
    named = {o.mistake for o in report.outcomes if not o.passed}
    assert ALIASES.get(mistake.name, mistake.name) in named, (mistake.name, named)


@pytest.mark.parametrize(("step", "mistake"), [
    (no_zero_grad, "forgot_zero_grad"), (no_step, "no_step"), (no_backward, "no_backward"),
    (returns_only_the_loss, "returned_only_loss"), (returns_them_swapped, "swapped_return"),
    (encodes_again_after_the_step, "embeddings_after_step"),
])
def test_training_step_mistakes_lose_points_and_are_named(step, mistake):
    report = run_hidden_cases("training_step", step, seed=3, points=3)
    assert report.points == 0 and {o.mistake for o in report.outcomes} == {mistake}, report.text()


def lookup_table_function(name, extra_args=()):
    """What a learner who copies the visible check's answers writes: a table of the visible cases'
    expected answers (in float32, attached to the inputs where a gradient is needed), KeyError otherwise."""
    exercise = VISIBLE[name]
    table = {}
    for args in [case.args for case in exercise.cases] + list(extra_args):
        table[repr(_key(args))] = exercise.expected(*args)

    def function(*args):
        answer = table[repr(_key(args))]
        floats = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
        zero = floats[0].sum() * 0 if floats and exercise.needs_gradient else 0

        def convert(value):
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                return value.float() + zero
            return value
        return tuple(convert(v) for v in answer) if isinstance(answer, tuple) else convert(answer)
    return function


def _key(args):
    def one(value):
        if isinstance(value, torch.Tensor):
            return ("tensor", str(value.dtype), tuple(value.shape), tuple(round(v, 5) for v in value.detach().flatten().tolist()))
        if isinstance(value, list):
            return tuple(one(v) for v in value)
        if isinstance(value, dict):
            return tuple(sorted((k, one(v)) for k, v in value.items()))
        if isinstance(value, float) and math.isnan(value):
            return "nan"
        return value
    return tuple(one(a) for a in args)


EXTRA_VISIBLE_ARGS = {  # the cases the visible checks run after their listed ones
    "distance_matrix": [checks.ROUND_OFF_CASE.args, checks.LOOP_CASE.args],
    "mean_over_active": [checks.NONE_ACTIVE_CASE.args],
    "error_rates": [checks_recognition._library_case()],
}


@pytest.mark.parametrize("name", sorted(VISIBLE))
def test_a_lookup_table_of_the_visible_cases_passes_the_check_but_scores_0(name, capsys):
    function = lookup_table_function(name, EXTRA_VISIBLE_ARGS.get(name, ()))
    assert CHECKS[name](function).passed, capsys.readouterr().out
    report = run_hidden_cases(name, function, seed=1234, points=3)
    assert report.points == 0, report.text()


def test_grade_shows_text_and_json_and_returns_partial_credit(capsys):
    def nan_when_none_active(losses):
        return losses[losses > 0].mean()

    points = grade("mean_over_active", nan_when_none_active, points=2, seed=7)
    shown = capsys.readouterr().out
    assert 0 < points < 2 and f"{points:g} of 2 points" in shown
    assert "FAILED  one loss, 0: no triplet is active" in shown and "when no triplet is active" in shown
    report = run_hidden_cases("mean_over_active", nan_when_none_active, seed=7, points=2)
    assert report_from_json(json.dumps(report.to_json())) == report
    assert RESULT_MIME.startswith("application/") and RESULT_MIME.endswith("+json")


def test_an_endless_loop_is_stopped_and_the_other_cases_are_not_run():
    def endless(losses):
        while True:
            pass

    started = time.monotonic()
    report = run_hidden_cases("mean_over_active", endless, seed=1, points=2, case_seconds=0.5)
    assert time.monotonic() - started < 5
    assert report.points == 0
    assert [o.mistake for o in report.outcomes] == ["timeout"] + ["not_run"] * (len(report.outcomes) - 1)


def test_a_function_that_is_missing_or_raises_or_exits_scores_0():
    missing = run_hidden_cases("verify", None, seed=1, points=2)
    assert missing.points == 0 and "is not defined" in missing.outcomes[0].message

    def exits(*args):
        raise SystemExit(3)

    exited = run_hidden_cases("verify", exits, seed=1, points=2)
    assert exited.points == 0 and "SystemExit" in exited.outcomes[0].message

    def stub(*args):
        raise NotImplementedError()

    report = run_hidden_cases("verify", stub, seed=1, points=2)
    assert {o.mistake for o in report.outcomes} == {"not_implemented"}
    assert report.text().count("not implemented yet") == 1  # one message for all cases


def test_hidden_cases_write_nothing_to_stderr(capfd):
    def noisy(x):
        import warnings
        warnings.warn("a learner's warning")
        print("debug", file=sys.stderr)
        return SOLUTIONS["distance_matrix"](x)

    report = run_hidden_cases("distance_matrix", noisy, seed=2, points=3)
    assert report.points == 3
    assert capfd.readouterr().err == ""  # nbgrader gives a grade cell with stderr output 0 points


def test_the_learners_import_loads_neither_nbgrader_nor_the_grader():
    code = ("import sys, course_utils, course_utils.checks.basics, course_instructor.hidden_tests; "
            "print('nbgrader' in sys.modules, 'course_instructor.grading' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ---------------------------------------------------------------------------
# The source (instructor) version and the release.


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_source_version_marks_each_exercise_for_nbgrader(path):
    master = nbformat.read(path, as_version=4)
    source, items = grading.make_source_notebook(master, seed=11, points={"verify": 5})
    exercises = grading.find_exercises(master)
    assert [name for name, _ in items] == [e.name for e in exercises]
    assert len(source.cells) == len(master.cells) + len(exercises)
    assert all(c.get("outputs", []) == [] for c in source.cells)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): (i, c) for i, c in enumerate(source.cells)}
    for name, points in items:
        solution_at, solution = by_id[f"solution_{name}"]
        check_at, check = by_id[f"check_{name}"]
        test_at, test = by_id[f"hidden_tests_{name}"]
        assert solution.metadata.nbgrader["solution"] and not solution.metadata.nbgrader["locked"]
        assert check.metadata.nbgrader["locked"] and not check.metadata.nbgrader["grade"]
        assert test.metadata.nbgrader["grade"] and test.metadata.nbgrader["locked"]
        assert test.metadata.nbgrader["points"] == points == (5 if name == "verify" else DEFAULT_POINTS[name])
        assert solution_at < check_at < test_at == check_at + 1
        hidden = test.source.split(grading.HIDDEN_BEGIN)[1].split(grading.HIDDEN_END)[0]
        assert f"grade({name!r}, globals().get({name!r}), points={float(points)!r}, seed=11)" in hidden
    assert nbformat.writes(master) == nbformat.writes(nbformat.read(path, as_version=4))  # input unchanged


@pytest.mark.parametrize("path", NOTEBOOKS[:3], ids=lambda p: p.stem)
def test_the_student_version_of_the_source_is_the_student_copy_plus_comment_cells(path):
    master = nbformat.read(path, as_version=4)
    source, _ = grading.make_source_notebook(master, seed=1)
    released = make_student_notebook(source)  # the preprocessors nbgrader's generate_assignment runs
    assert grading.release_differences(released, make_student_notebook(master)) == []
    broken = copy.deepcopy(released)
    test = next(c for c in broken.cells if c.id.startswith(grading.TEST_CELL_PREFIX))
    test.source += "\nprint('oops')"
    assert any("shows code" in p for p in grading.release_differences(broken, make_student_notebook(master)))


def test_select_notebooks_by_number_or_name():
    src = ROOT / "notebooks"
    assert [p.stem for p in grading.select_notebooks(src, ["01", "3", "02_margin"])] == \
        ["01_distances", "03_loss_and_cost", "02_margin"]
    assert "09_more_than_one_gpu" not in [p.stem for p in grading.select_notebooks(src, None)]
    with pytest.raises(grading.GradingError, match="no exercise"):
        grading.select_notebooks(src, ["09"])
    with pytest.raises(grading.GradingError, match="no notebook"):
        grading.select_notebooks(src, ["42"])


# ---------------------------------------------------------------------------
# Collecting: reading hand-ins and putting their cells back in order.


@pytest.fixture(scope="module")
def released():
    master = nbformat.read(ROOT / "notebooks" / "03_loss_and_cost.ipynb", as_version=4)
    return make_student_notebook(grading.make_source_notebook(master, seed=1)[0])


def index_of(notebook, grade_id):
    return next(i for i, c in enumerate(notebook.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def test_a_hand_in_in_order_is_left_as_it_is(released):
    edited = copy.deepcopy(released)
    edited.cells[index_of(edited, "solution_mean_over_active")].source = "def mean_over_active(losses):\n    return 1"
    edited.cells.insert(5, nbformat.v4.new_code_cell("x = 1  # a cell of the student's own"))
    same, notes = grading.reassemble(edited, released)
    assert nbformat.writes(same) == nbformat.writes(edited) and notes == []
    stripped = copy.deepcopy(edited)
    stripped.cells[index_of(edited, "hidden_tests_mean_over_active")].metadata.pop("nbgrader")
    fixed, notes = grading.reassemble(stripped, released)
    assert nbformat.writes(fixed) == nbformat.writes(edited)
    assert notes == ["the grading metadata of 1 cell(s) was missing or changed and was restored"]


def test_moved_and_deleted_cells_are_put_back_in_the_released_order(released):
    mixed = copy.deepcopy(released)
    solution = mixed.cells.pop(index_of(mixed, "solution_mean_over_active"))
    solution.source = "def mean_over_active(losses):\n    return losses.sum() * 0"
    mixed.cells.append(solution)
    setup = next(i for i, c in enumerate(mixed.cells) if c.cell_type == "code")
    removed = mixed.cells.pop(setup)
    own = nbformat.v4.new_code_cell("helper = 2")
    mixed.cells.insert(setup + 3, own)
    fixed, notes = grading.reassemble(mixed, released)
    sources = [c.source for c in fixed.cells]
    assert [text for text in sources if text != own.source] == \
        [solution.source if c.metadata.get("nbgrader", {}).get("grade_id") == "solution_mean_over_active" else c.source
         for c in released.cells]
    assert sources.index(own.source) == sources.index(mixed.cells[setup + 2].source) + 1
    assert any("out of the released order" in n for n in notes)
    assert any("restored" in n and removed.source.splitlines()[0][:20] in n for n in notes)


def test_a_deleted_solution_cell_comes_back_as_the_stub_unless_another_cell_defines_it(released):
    without = copy.deepcopy(released)
    del without.cells[index_of(without, "solution_mean_over_active")]
    fixed, notes = grading.reassemble(without, released)
    assert "raise NotImplementedError" in fixed.cells[index_of(fixed, "solution_mean_over_active")].source
    assert any("solution cell of mean_over_active" in n for n in notes)
    own = copy.deepcopy(without)
    own.cells.insert(3, nbformat.v4.new_code_cell("def mean_over_active(losses):\n    return losses.mean()"))
    fixed, notes = grading.reassemble(own, released)
    assert not any(c.metadata.get("nbgrader", {}).get("grade_id") == "solution_mean_over_active" for c in fixed.cells)
    assert any("defined in a cell of the student's own" in n for n in notes)


def test_cells_without_ids_or_metadata_are_matched_by_their_source(released):
    old = copy.deepcopy(released)
    old.cells = list(reversed(old.cells))
    for cell in old.cells:
        cell.id = "x" + cell.id[::-1][:20]
        cell.metadata.pop("nbgrader", None)
    fixed, notes = grading.reassemble(old, released)
    assert [c.source for c in fixed.cells] == [c.source for c in released.cells]
    assert fixed.cells[index_of(released, "hidden_tests_mean_over_active")].metadata.nbgrader["grade"]


def test_reading_hand_ins(released):
    text = nbformat.writes(released)
    notebook, why = grading.read_submission(text.encode())
    assert notebook is not None and why == ""
    assert grading.read_submission(text[: len(text) // 2].encode())[1].startswith("not valid JSON")
    assert "not a text file" in grading.read_submission(b"\xff\xfe\x00garbage")[1]
    assert "not a Jupyter notebook" in grading.read_submission(b'{"hello": 1}')[1]
    assert "not a valid notebook" in grading.read_submission(b'{"cells": [{"cell_type": "spreadsheet"}]}')[1]
    data = json.loads(text)
    data["nbformat_minor"] = 4
    for cell in data["cells"]:
        cell.pop("id")
    data["cells"][1]["id"] = data["cells"][2]["id"] = "same"
    old, why = grading.read_submission(json.dumps(data).encode())
    assert why == "" and old.nbformat_minor == 5 and len({c.id for c in old.cells}) == len(old.cells)


def test_matching_files_in_a_student_folder(tmp_path):
    stems = ["01_distances", "03_loss_and_cost"]
    (tmp_path / "Submission attachments").mkdir()
    (tmp_path / "Submission attachments" / "03_loss_and_cost (1).ipynb").write_text("{}")
    (tmp_path / "01_distances.ipynb").write_text("{}")
    (tmp_path / "01_distances-copy.ipynb").write_text("{}")
    (tmp_path / "notes.ipynb").write_text("{}")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "01_distances-checkpoint.ipynb").write_text("{}")
    files, notes = grading.match_files(tmp_path, stems)
    assert files["01_distances"] == tmp_path / "01_distances.ipynb"
    assert files["03_loss_and_cost"].name == "03_loss_and_cost (1).ipynb"
    assert any("ignored notes.ipynb" in n for n in notes)
    assert not any("checkpoint" in n for n in notes)
    assert grading.match_files(tmp_path / "Submission attachments", ["01_distances"])[0] == {"01_distances": None}


def test_student_ids_from_folder_names():
    assert grading.student_id("Ada Lovelace (ada@uni.edu)") == "Ada_Lovelace__ada@uni.edu"
    assert grading.student_id("bob") == "bob" and grading.student_id("../..") == "student"


def test_the_note_of_each_exercise_in_the_csv():
    report = run_hidden_cases("mean_over_active", lambda losses: losses[losses > 0].mean(), seed=3, points=2)
    record = {"status": "graded", "reports": {"mean_over_active": report.to_json()}}
    assert grading._exercise_note(record, "mean_over_active") == "2 of 6 hidden cases failed (nan_when_none_active)"
    stub = run_hidden_cases("mean_over_active", None, seed=3, points=2)
    assert grading._exercise_note({"reports": {"mean_over_active": stub.to_json()}}, "mean_over_active") == \
        "mean_over_active is not defined"
    assert grading._exercise_note({"status": "unreadable"}, "x").startswith("file cannot be read")
    assert grading._exercise_note({"status": "missing"}, "x") == "not handed in"

