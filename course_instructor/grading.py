"""Classroom grading with nbgrader, offline: `release` the exercises with hidden tests; `grade` a folder
of per-student folders into nbgrader's gradebook, grades.csv and one feedback page per student.

The course directory (default classroom/) has nbgrader's layout plus grades.csv, hidden_seed.txt and
grading_state.json (which file each grade came from, so that a re-run grades only what changed).
Student code runs with the instructor's rights: this is no sandbox (README, "Grading a class").

    python -m course_instructor.grading release [--course classroom] [--assignment triplet-loss]
        [--notebooks 01 02 03] [--seed N] [--points name=N ...]
    python -m course_instructor.grading grade SUBMISSIONS [--course classroom] [--assignment triplet-loss]
        [--timeout 300] [--jobs 1] [--force]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import hashlib
import html
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import nbformat

from course_instructor.copies import ROOT, SOLUTION_BEGIN, course_notebooks, make_student_notebook
from course_instructor.hidden_tests import DEFAULT_POINTS, EXERCISES, RESULT_MIME, report_from_json

DEFAULT_COURSE = ROOT / "classroom"
DEFAULT_ASSIGNMENT = "triplet-loss"
DEFAULT_TIMEOUT = 300  # seconds per cell; the course's slowest cell takes about a minute on 2 cores
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
TEST_CELL_PREFIX = "hidden-tests-"
TIMEOUT_ERROR = "CellTimeoutError"  # nbgrader's name for a cell that ran past Execute.timeout

CONFIG = '''\
# Written by `make release` (course_instructor/grading.py); nbgrader's own commands work in this folder.
import os

c = get_config()
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.OverwriteCells.add_missing_cells = True  # a deleted grade cell comes back from the gradebook
c.Execute.timeout = {timeout}
c.Execute.interrupt_on_timeout = True
# Feedback shows each hidden test cell's results, never its code.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "nbgrader.preprocessors.ClearHiddenTests",
]
'''


class GradingError(RuntimeError):
    """Something the instructor has to fix; the message says what."""


# Release: the instructor's source version of each notebook, then nbgrader's student version.


class ExerciseCells(NamedTuple):
    """The function an exercise asks for and the indices of its solution and check cells."""

    name: str
    solution: int
    check: int


def find_exercises(notebook) -> list[ExerciseCells]:
    """Each solution cell, the function its ``def`` names, and the next code cell calling ``check_...(name)``."""
    cells, found = notebook.cells, []
    for i, cell in enumerate(cells):
        if cell.cell_type != "code" or SOLUTION_BEGIN not in cell.source:
            continue
        match = re.search(r"^\s*def\s+(\w+)\s*\(", cell.source, re.MULTILINE)
        if match is None:
            raise ValueError(f"cell {i}: a solution cell without a `def` line; cannot tell which function is graded")
        call = re.compile(rf"\bcheck_\w+\(\s*{re.escape(match[1])}\b")
        check = next((j for j in range(i + 1, len(cells))
                      if cells[j].cell_type == "code" and call.search(cells[j].source)), None)
        if check is None:
            raise ValueError(f"cell {i}: no check cell calls check_...({match[1]}) after the solution of {match[1]}")
        found.append(ExerciseCells(match[1], i, check))
    return found


def select_notebooks(src: Path, wanted: list[str] | None) -> list[Path]:
    """The notebooks named in `wanted` (such as "01" or "01_distances"), or every notebook with an exercise."""
    notebooks = course_notebooks(Path(src))
    if not wanted:
        return [p for p in notebooks if SOLUTION_BEGIN in p.read_text(encoding="utf-8")]
    chosen = []
    for item in wanted:
        key = Path(item).stem
        matches = [p for p in notebooks if p.stem == key or p.stem.split("_")[0] == key.zfill(2)]
        if not matches:
            names = ", ".join(p.stem for p in notebooks)
            raise GradingError(f"no notebook {item!r} in {src}; the notebooks are {names}")
        for path in matches:
            if SOLUTION_BEGIN not in path.read_text(encoding="utf-8"):
                raise GradingError(f"{path.name} has no exercise (no {SOLUTION_BEGIN} cell): nothing to grade")
            chosen += [path] if path not in chosen else []
    return chosen


def _mark(cell, grade_id: str, solution=False, grade=False, locked=True, points: float | None = None) -> None:
    cell.metadata["nbgrader"] = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
                                 "solution": solution, **({} if points is None else {"points": points})}


def make_source_notebook(master, seed: int, points: dict[str, float] | None = None):
    """nbgrader's source version of a notebook: outputs cleared, solution cells marked, check cells locked
    and followed by a hidden test cell. Returns (notebook, [(exercise name, points), ...])."""
    points = {**DEFAULT_POINTS, **(points or {})}
    notebook = copy.deepcopy(master)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    exercises = find_exercises(notebook)
    unknown = [e.name for e in exercises if e.name not in EXERCISES]
    if unknown:
        raise GradingError(f"the exercise {unknown[0]} has no hidden tests: add them to "
                           "course_instructor/hidden_tests.py (EXERCISES and DEFAULT_POINTS)")
    items = [(e.name, float(points.get(e.name, 1))) for e in exercises]
    for exercise, (name, worth) in reversed(list(zip(exercises, items))):
        _mark(notebook.cells[exercise.solution], f"solution_{name}", solution=True, locked=False)
        _mark(notebook.cells[exercise.check], f"check_{name}")
        test = nbformat.v4.new_code_cell(
            f"# Graded: {name} is also run on cases you have not seen (hidden tests, {worth:g} points). "
            f"Leave this cell as it is.\n{HIDDEN_BEGIN}\nfrom course_instructor.hidden_tests import grade\n"
            f"grade({name!r}, globals().get({name!r}), points={worth!r}, seed={seed})\n{HIDDEN_END}")
        test.id = TEST_CELL_PREFIX + name
        _mark(test, f"hidden_tests_{name}", grade=True, points=worth)
        notebook.cells.insert(exercise.check + 1, test)
    nbformat.validate(notebook)
    return notebook, items


def release_differences(release, student) -> list[str]:
    """How a released notebook differs from the student copy, besides its hidden test cells (which must
    show only a comment). Empty when they agree."""
    problems, kept = [], []
    for cell in release.cells:
        if not cell.get("id", "").startswith(TEST_CELL_PREFIX):
            kept.append(cell)
        elif HIDDEN_BEGIN in cell.source or any(not line.lstrip().startswith("#")
                                                for line in cell.source.splitlines() if line.strip()):
            problems.append(f"the test cell {cell.id} shows code to students: {cell.source!r}")
    if len(kept) != len(student.cells):
        problems.append(f"{len(kept)} cells besides the test cells, the student copy has {len(student.cells)}")
    for number, (ours, theirs) in enumerate(zip(kept, student.cells)):
        if ours.cell_type != theirs.cell_type or ours.source.rstrip() != theirs.source.rstrip():
            problems.append(f"cell {number} differs: {ours.source[:60]!r} vs {theirs.source[:60]!r}")
    return problems


def run_nbgrader(args: list[str], course: Path, limit: float | None = None) -> tuple[int | None, str]:
    """Run one nbgrader command in the course directory in quick mode; returns (exit status, or None when
    killed after `limit` seconds with every process it started; the output)."""
    import psutil  # nbgrader's IPython needs it

    env = {"COURSE_MODE": "quick", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           **os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    env.pop("JUPYTER_PLATFORM_DIRS", None)
    process = subprocess.Popen([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output = process.communicate(timeout=limit)[0]
        return process.returncode, output
    except subprocess.TimeoutExpired:
        try:
            stragglers = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            stragglers = []
        for child in [*stragglers, process]:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        return None, process.communicate()[0]


@dataclass
class Release:
    notebooks: list[Path]
    exercises: dict[str, list[tuple[str, float]]]
    zip_path: Path
    warnings: list[str] = field(default_factory=list)


def _seed(course: Path, seed: int | None) -> int:
    """The seed of the hidden cases: given, else the one the course directory keeps, else a new random one."""
    path = course / "hidden_seed.txt"
    if seed is None:
        seed = int(path.read_text()) if path.exists() else secrets.randbelow(10**9)
    path.write_text(f"{seed}\n")
    return int(seed)


def release(course: Path = DEFAULT_COURSE, assignment: str = DEFAULT_ASSIGNMENT, notebooks: list[str] | None = None,
            seed: int | None = None, points: dict[str, float] | None = None) -> Release:
    """Write the source version of the chosen notebooks and let nbgrader generate the student release.

    Args:
        notebooks: numbers or names of the notebooks; None for every notebook with an exercise.
        seed: seed of the hidden random cases; None keeps the course directory's (or draws one).
        points: points per exercise, overriding `hidden_tests.DEFAULT_POINTS`.

    Returns:
        What was released; its warnings say when the committed student copies (student/) differ from it.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", assignment):
        raise GradingError(f"assignment name {assignment!r}: use letters, digits, '_', '.' and '-'")
    course = Path(course).resolve()
    chosen = select_notebooks(ROOT / "notebooks", notebooks)
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(CONFIG.format(timeout=DEFAULT_TIMEOUT), encoding="utf-8")
    seed = _seed(course, seed)
    source_dir = course / "source" / assignment
    shutil.rmtree(source_dir, ignore_errors=True)
    source_dir.mkdir(parents=True)
    exercises = {}
    for path in chosen:
        source, exercises[path.stem] = make_source_notebook(nbformat.read(path, as_version=4), seed, points)
        nbformat.write(source, source_dir / path.name)
    status, output = run_nbgrader(["generate_assignment", assignment, "--force"], course)
    released = [course / "release" / assignment / path.name for path in chosen]
    if status != 0 or not all(p.exists() for p in released):
        raise GradingError(f"nbgrader generate_assignment failed:\n{output[-4000:]}")
    result = Release(released, exercises, course / "release" / f"{assignment}.zip")
    for path, out in zip(chosen, released):
        out = nbformat.read(out, as_version=4)
        problems = release_differences(out, make_student_notebook(nbformat.read(path, as_version=4)))
        if problems:
            raise GradingError(f"the release of {path.name} does not match its student copy:\n  "
                               + "\n  ".join(problems))
        committed = ROOT / "student" / path.name
        if committed.exists() and release_differences(out, nbformat.read(committed, as_version=4)):
            result.warnings.append(f"{committed} differs from the release of {path.name}: run `make student-copies` "
                                   "so that the committed student copies match")
    with zipfile.ZipFile(result.zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in released:
            archive.write(path, f"{assignment}/{path.name}")
    return result


# Collecting: a folder of per-student folders -> submitted/<student>/<assignment>/.


def student_id(folder_name: str) -> str:
    """nbgrader's id for a student folder: letters, digits and _ . @ - (anything else becomes _)."""
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", folder_name.strip()).strip("._") or "student"


def match_files(folder: Path, stems: list[str]) -> tuple[dict[str, Path | None], list[str]]:
    """Which file of a student's folder is which notebook, and notes: the exact name wins, else a name
    containing the notebook's (as an LMS renames them), else one starting with its number; the newest of several."""
    files = sorted(p for p in folder.rglob("*.ipynb") if p.is_file() and not any(
        part == "__MACOSX" or part.startswith(".") for part in p.relative_to(folder).parts))
    chosen, notes, used = {}, [], set()
    for stem in stems:
        number = stem.split("_")[0]
        candidates = []
        for rule in (lambda p: p.stem == stem, lambda p: stem in p.stem,
                     lambda p: re.match(rf"{re.escape(number)}(?!\d)", p.stem) is not None):
            candidates = candidates or [p for p in files if p not in used and rule(p)]
        chosen[stem] = pick = max(candidates, key=lambda p: (p.stat().st_mtime, str(p)), default=None)
        if pick is None:
            continue
        if len(candidates) > 1:
            notes.append(f"several files for {stem}: graded {pick.relative_to(folder)} (the newest), ignored "
                         + ", ".join(str(p.relative_to(folder)) for p in candidates if p != pick))
        if pick.name != f"{stem}.ipynb":
            notes.append(f"{pick.relative_to(folder)} graded as {stem}.ipynb")
        used.update(candidates)
    notes += [f"ignored {p.relative_to(folder)}: not a notebook of this assignment" for p in files if p not in used]
    return chosen, notes


def read_submission(raw: bytes):
    """(notebook, "") or (None, why it cannot be read); missing or repeated cell ids get new ones for nbgrader."""
    try:
        text = raw.decode("utf-8-sig")
        data = json.loads(text)
    except UnicodeDecodeError as error:
        return None, f"not a text file ({error})"
    except json.JSONDecodeError as error:
        return None, f"not valid JSON ({error})"
    if not isinstance(data, dict) or not isinstance(data.get("cells", data.get("worksheets")), list):
        return None, "valid JSON, but not a Jupyter notebook (no cells)"
    try:
        notebook = nbformat.reads(text, as_version=4)
        notebook.nbformat_minor = max(notebook.nbformat_minor, 5)
        seen = set()
        for number, cell in enumerate(notebook.cells):
            if not cell.get("id") or cell.id in seen:
                cell.id = f"cell-{number}-{secrets.token_hex(4)}"
            seen.add(cell.id)
        nbformat.validate(notebook)
    except Exception as error:  # noqa: BLE001 - nbformat raises many kinds of errors
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        return None, f"not a valid notebook ({message[:200]})"
    return notebook, ""


def _first_line(cell) -> str:
    line = next((line.strip() for line in cell.source.splitlines()
                 if line.strip() and not line.strip().startswith("# NBVAL")), "")
    return (line[:57] + "...") if len(line) > 60 else line


def _grade_id(cell) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or ""


def _match_cells(submitted, released) -> list[int | None]:
    """For each submitted cell, the released cell it is (by grade id, cell id, then source), or None."""
    cells = released.cells
    by_grade_id = {_grade_id(c): i for i, c in enumerate(cells) if _grade_id(c)}
    by_id = {c.get("id"): i for i, c in enumerate(cells) if c.get("id") and not _grade_id(c)}
    by_source: dict[tuple[str, str], list[int]] = {}
    for i, c in enumerate(cells):
        by_source.setdefault((c.cell_type, c.source), []).append(i)
    owner, taken = [], set()
    for cell in submitted.cells:
        match = next((i for i in (by_grade_id.get(_grade_id(cell)), by_id.get(cell.get("id")))
                      if i is not None and i not in taken and cells[i].cell_type == cell.cell_type), None)
        if match is None:
            match = next((i for i in by_source.get((cell.cell_type, cell.source), []) if i not in taken), None)
        taken.add(match)
        owner.append(match)
    return owner


def _put_in_order(submitted, owner: list[int | None], released) -> list[str]:
    """Rebuild `submitted.cells` in the released order, the student's own cells after the cell they followed;
    a missing cell comes back from the release (a solution as the stub, unless the student defines it elsewhere)."""
    followers: dict[int | None, list] = {}  # released index (None: the top) -> the student's cells after it
    anchor = None
    for cell, match in zip(submitted.cells, owner):
        if match is None:
            followers.setdefault(anchor, []).append(cell)
        anchor = anchor if match is None else match
    added = [cell for group in followers.values() for cell in group]
    own = {match: cell for cell, match in zip(submitted.cells, owner) if match is not None}
    cells, restored, skipped = list(followers.get(None, [])), [], []
    for i, released_cell in enumerate(released.cells):
        grade_id = _grade_id(released_cell)
        name = grade_id[len("solution_"):] if grade_id.startswith("solution_") else ""
        if i in own:
            cells.append(own[i])
        elif name and any(c.cell_type == "code" and re.search(rf"^\s*def\s+{name}\s*\(", c.source, re.MULTILINE)
                          for c in added):
            skipped.append(f"the solution cell of {name} was deleted; {name} is defined in a cell of the "
                           "student's own, which is graded instead")
        else:
            cells.append(copy.deepcopy(released_cell))
            restored.append(f"the solution cell of {name} (restored as the blank stub, so {name} cannot score)" if name
                            else f"cell {i + 1} ({released_cell.cell_type}: {_first_line(released_cell)!r})")
        cells += followers.get(i, [])
    submitted.cells = cells
    found = [i for i in owner if i is not None]
    moved = found != sorted(found)
    notes = ["cells were out of the released order and were put back in it before grading"] if moved else []
    if restored:
        notes.append(f"{len(restored)} deleted cell(s) restored from the release: " + "; ".join(restored[:6])
                     + ("; ..." if len(restored) > 6 else ""))
    return notes + skipped


def reassemble(submitted, released) -> tuple[object, list[str]]:
    """A copy of the submission in the released order with the release's nbgrader metadata, and notes on
    what was moved or restored."""
    owner = _match_cells(submitted, released)
    submitted = copy.deepcopy(submitted)
    relabelled = 0
    for cell, match in zip(submitted.cells, owner):
        wanted = released.cells[match].metadata.get("nbgrader") if match is not None else None
        if wanted is not None and cell.metadata.get("nbgrader") != wanted:
            cell.metadata["nbgrader"] = copy.deepcopy(wanted)
            relabelled += 1
    notes = ([f"the grading metadata of {relabelled} cell(s) was missing or changed and was restored"]
             if relabelled else [])
    notes += _put_in_order(submitted, owner, released)
    nbformat.validate(submitted)
    return submitted, notes


# Grading: nbgrader autograde per student, its results, the gradebook.


def _db_url(course: Path) -> str:
    return f"sqlite:///{Path(course).resolve() / 'gradebook.db'}"


def _set_zero(course: Path, assignment: str, student: str, notebooks: list[str]) -> None:
    """Score 0 for every grade cell of these notebooks of a student."""
    import warnings

    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(_db_url(course)) as gradebook, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notes inside nbgrader's add_submission
        gradebook.update_or_create_student(student)
        try:
            gradebook.find_submission(assignment, student)
        except MissingEntry:
            gradebook.add_submission(assignment, student)
        for notebook in notebooks:
            for grade in gradebook.find_submission_notebook(notebook, assignment, student).grades:
                grade.auto_score, grade.needs_manual_grade = 0, False
        gradebook.db.commit()


def gradebook_scores(course: Path) -> list[dict]:
    """Every grade cell of every submission, as dicts."""
    from nbgrader.api import Gradebook

    with Gradebook(_db_url(course)) as gradebook:
        return [{"assignment": assignment.name, "student": submission.student.id, "notebook": notebook.name,
                 "grade_id": grade.name, "score": float(grade.score), "max_score": float(grade.max_score)}
                for assignment in gradebook.assignments
                for submission in gradebook.assignment_submissions(assignment.name)
                for notebook in submission.notebooks for grade in notebook.grades]


def _assignment_notebooks(course: Path, assignment: str) -> list[str]:
    from nbgrader.api import Gradebook, MissingEntry

    if not (course / "source" / assignment).is_dir() or not (course / "gradebook.db").exists():
        raise GradingError(f"no release of {assignment!r} in {course}: run `make release` first")
    with Gradebook(_db_url(course)) as gradebook:
        try:
            return sorted(notebook.name for notebook in gradebook.find_assignment(assignment).notebooks)
        except MissingEntry:
            raise GradingError(f"the gradebook has no assignment {assignment!r}: run `make release` first") from None


def read_graded(path: Path, timeout: int) -> tuple[dict[str, dict], list[str]]:
    """({exercise: report JSON, or {"error": ...}}, notes on failed cells) of an autograded notebook."""
    reports, errors = {}, []
    for number, cell in enumerate(nbformat.read(path, as_version=4).cells):
        outputs = cell.get("outputs", [])
        failures = [o for o in outputs if o.get("output_type") == "error"]
        timed_out = next((e for e in failures if e.get("ename") == TIMEOUT_ERROR), None)
        if _grade_id(cell).startswith("hidden_tests_"):
            name = _grade_id(cell)[len("hidden_tests_"):]
            data = [o["data"][RESULT_MIME] for o in outputs if RESULT_MIME in o.get("data", {})
                    and o.get("output_type") == "display_data"]
            if data and any(o.get("output_type") == "execute_result" for o in outputs):
                reports[name] = data[-1]
            elif failures:
                error = timed_out or failures[0]
                why = (f"did not finish within {timeout} s" if timed_out
                       else f"raised {error.get('ename')}: {error.get('evalue', '')[:200]}")
                reports[name] = {"error": f"the hidden tests of {name} did not run: their cell {why}"}
            else:
                reports[name] = {"error": f"the hidden tests of {name} gave no result"}
        elif failures:
            label = f"cell {number + 1} (`{_first_line(cell)}`)"
            errors.append(f"{label} did not finish within {timeout} s and was interrupted" if timed_out else
                          f"{label} raised {failures[0].get('ename')}: {str(failures[0].get('evalue', ''))[:160]}")
    notes = [f"{len(errors)} cell(s) failed while grading: " + "; ".join(errors[:5])
             + ("; ..." if len(errors) > 5 else "")] if errors else []
    return reports, notes


def _result(status: str, note: list[str], key: str, file: str | None) -> dict:
    """One notebook's result; status is graded, missing, unreadable or failed."""
    return {"status": status, "notes": note, "reports": {}, "key": key, "file": file}


def _copy_hand_ins(course: Path, assignment: str, sid: str, todo: dict, released: dict, folder: Path) -> dict:
    """Write each readable hand-in, reassembled, into submitted/; the result of each notebook so far."""
    target = course / "submitted" / sid / assignment
    target.mkdir(parents=True, exist_ok=True)
    results = {}
    for stem, (path, raw, key) in todo.items():
        for old in (target / f"{stem}.ipynb", course / "autograded" / sid / assignment / f"{stem}.ipynb"):
            if old.exists():
                old.chmod(0o644)  # nbgrader makes its files read-only
                old.unlink()
        shown = str(path.relative_to(folder)) if path else None
        notebook, why = read_submission(raw) if path else (None, "")
        if path is None:
            results[stem] = _result("missing", [f"{stem}.ipynb was not handed in: 0 points"], key, shown)
        elif notebook is None:
            results[stem] = _result("unreadable", [f"{shown} cannot be read, so it was graded 0: {why}. "
                                                   "Ask the student to hand in the file again."], key, shown)
        else:
            notebook, notes = reassemble(notebook, released[stem])
            stubs = {_grade_id(c): c.source.strip() for c in released[stem].cells
                     if _grade_id(c).startswith("solution_")}
            untouched = [gid[len("solution_"):] for gid, stub in stubs.items()
                         if any(_grade_id(c) == gid and c.source.strip() == stub for c in notebook.cells)]
            if untouched and len(untouched) == len(stubs):
                notes.append("this is the untouched student copy: no exercise was attempted")
            elif untouched:
                notes.append(f"not attempted (the solution cell is still the stub): {', '.join(untouched)}")
            nbformat.write(notebook, target / f"{stem}.ipynb")
            results[stem] = _result("graded", notes, key, shown)
    return results


def _why_failed(status: int | None, output: str, limit: float) -> str:
    if status is None:
        return (f"grading was stopped after {limit:g} s (the limit for the whole notebook), so it scores 0; "
                "grade it by hand if it deserves more")
    lines = output.splitlines()
    dead = ("DeadKernelError", "Kernel died", "UnresponsiveKernelError", "kernel became unresponsive")
    last_error = next((line.strip() for line in reversed(lines) if "error" in line.lower()), f"exit status {status}")
    reason = next((line.strip() for line in lines if any(sign in line for sign in dead)), last_error)
    reason = re.sub(r"^\[\w+ \| \w+\]\s*", "", reason)  # nbgrader's log prefix
    return f"the notebook could not be graded ({reason[:200]}), so it scores 0; grade it by hand if it deserves more"


def _autograde(course: Path, assignment: str, sid: str, results: dict, timeout: int) -> None:
    """Autograde the copied notebooks and read the results; one that could not be graded scores 0."""
    to_run = [stem for stem, result in results.items() if result["status"] == "graded"]
    every = len(to_run) == len(results) > 1
    limit = (3 * timeout + 120) * (len(to_run) if every else 1)
    for pattern, stems in [("*", to_run)] if every else [(stem, [stem]) for stem in to_run]:
        for _ in range(2):  # once more when another grading job held the gradebook too long
            status, output = run_nbgrader(["autograde", assignment, "--student", sid, "--notebook", pattern,
                                           "--force", f"--Execute.timeout={int(timeout)}"], course, limit=limit)
            if status == 0 or "database is locked" not in output:
                break
        for stem in stems:
            graded = course / "autograded" / sid / assignment / f"{stem}.ipynb"
            if graded.exists():  # _copy_hand_ins removed the one of an earlier run
                reports, notes = read_graded(graded, timeout)
                results[stem]["reports"] = reports
                results[stem]["notes"] += notes
            else:
                results[stem]["status"] = "failed"
                results[stem]["notes"].insert(0, _why_failed(status, output, limit))
    zero = [stem for stem, result in results.items() if result["status"] != "graded"]
    if zero:
        _set_zero(course, assignment, sid, zero)


def _grade_student(course: Path, assignment: str, sid: str, todo: dict, released: dict, timeout: int,
                   folder: Path) -> dict[str, dict]:
    """Grade one student's changed notebooks; an unexpected error scores them 0 instead of stopping the class."""
    try:
        results = _copy_hand_ins(course, assignment, sid, todo, released, folder)
        _autograde(course, assignment, sid, results, timeout)
        return results
    except Exception as error:  # noqa: BLE001 - one student's hand-in must not stop the class
        note = f"the grader failed on this hand-in ({type(error).__name__}: {error}), so it scores 0; grade it by hand"
        try:
            _set_zero(course, assignment, sid, list(todo))
        except Exception as again:  # noqa: BLE001
            note += f" (and the gradebook could not be updated: {again})"
        return {stem: _result("failed", [note], key, None) for stem, (_, _, key) in todo.items()}


@dataclass
class Grading:
    graded: dict[str, list[str]]
    unchanged: list[str]
    grades_csv: Path
    feedback: dict[str, Path]
    warnings: list[str]


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"".join(hashlib.sha256(part).digest() for part in parts)).hexdigest()


def _load_state(course: Path) -> dict:
    path = Path(course) / "grading_state.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _save_state(course: Path, state: dict) -> None:
    temporary = course / "grading_state.tmp"
    temporary.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
    temporary.replace(course / "grading_state.json")


def _changed_hand_ins(submissions: Path, stems: list[str], source_digests: dict[str, str], records: dict,
                      force: bool, warnings: list[str]) -> tuple[dict[str, tuple], list[str]]:
    """({student: (folder, {stem: (path or None, bytes, key)})} of what changed since the last grading,
    the students with nothing changed)."""
    warnings += [f"ignored {p.name}: put each student's files in a folder named after the student"
                 for p in sorted(submissions.iterdir()) if p.is_file()]
    work, unchanged, seen = {}, [], set()
    for folder in sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))):
        sid = student_id(folder.name)
        while sid in seen:
            sid += "-2"
        seen.add(sid)
        if sid != folder.name:
            warnings.append(f"the folder {folder.name!r} is graded as student {sid!r}")
        files, file_notes = match_files(folder, stems)
        record = records.setdefault(sid, {"notebooks": {}})
        record["folder"], record["file_notes"] = folder.name, file_notes
        todo = {}
        for stem, path in files.items():
            raw = path.read_bytes() if path else b""
            key = _digest(raw, source_digests[stem].encode(), b"present" if path else b"missing")
            if force or record["notebooks"].get(stem, {}).get("key") != key:
                todo[stem] = (path, raw, key)
        if todo:
            work[sid] = (folder, todo)
        else:
            unchanged.append(sid)
    return work, unchanged


def _generate_feedback(course: Path, assignment: str, graded: list[str], records: dict, warnings: list[str]) -> None:
    """nbgrader's feedback pages: one run for the class when everybody was graded now, else one per student."""
    with_graded = [sid for sid in graded if any((course / "autograded" / sid / assignment).glob("*.ipynb"))]
    for sid in set(graded) - set(with_graded):
        shutil.rmtree(course / "feedback" / sid / assignment, ignore_errors=True)
    everyone = all(sid in graded for sid, record in records.items()
                   if any(r["status"] == "graded" for r in record["notebooks"].values()))
    for group in (["*"] if everyone and with_graded else with_graded):
        status, output = run_nbgrader(["generate_feedback", assignment, "--student", group, "--force"], course,
                                      limit=1800)
        if status != 0:
            warnings.append(f"nbgrader generate_feedback --student {group} failed: {output[-1500:]}")


def grade(submissions: Path, course: Path = DEFAULT_COURSE, assignment: str = DEFAULT_ASSIGNMENT,
          timeout: int = DEFAULT_TIMEOUT, force: bool = False, jobs: int = 1) -> Grading:
    """Grade every student folder in `submissions`; re-grade only what changed since the last run.

    Args:
        submissions: one sub-folder per student holding their notebooks (any depth).
        timeout: seconds each cell may run (HIDDEN_CASE_SECONDS sets each hidden case's limit).
        force: grade everybody again, changed or not.
        jobs: how many students are graded at the same time.
    """
    course, submissions = Path(course).resolve(), Path(submissions).resolve()
    if not submissions.is_dir():
        raise GradingError(f"{submissions} is not a folder (expected one sub-folder per student)")
    stems = _assignment_notebooks(course, assignment)
    released = {stem: nbformat.read(course / "release" / assignment / f"{stem}.ipynb", as_version=4) for stem in stems}
    digests = {stem: _digest((course / "source" / assignment / f"{stem}.ipynb").read_bytes()) for stem in stems}
    state, warnings, graded = _load_state(course), [], {}
    records = state.setdefault(assignment, {})
    work, unchanged = _changed_hand_ins(submissions, stems, digests, records, force, warnings)
    print(f"{len(work)} student(s) to grade, {len(unchanged)} unchanged since they were last graded")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, int(jobs))) as pool:
        running = {pool.submit(_grade_student, course, assignment, sid, todo, released, timeout, folder): sid
                   for sid, (folder, todo) in work.items()}
        for number, future in enumerate(as_completed(running), start=1):
            sid, results = running[future], future.result()
            records[sid]["notebooks"].update(results)
            graded[sid] = list(results)
            _save_state(course, state)
            statuses = ", ".join(f"{stem} {result['status']}" for stem, result in results.items())
            print(f"[{number}/{len(work)}] {sid}: {statuses} ({time.monotonic() - started:.0f} s)")
    if graded:
        _generate_feedback(course, assignment, sorted(graded), records, warnings)
    rows = write_grades_csv(course, state)
    feedback = {sid: course / "feedback" / sid / assignment / "index.html" for sid in records}
    for sid, page in feedback.items():
        if sid in graded or not page.exists():
            write_feedback_page(page, assignment, sid, records[sid], stems, rows)
    return Grading(graded, unchanged, course / "grades.csv", feedback, warnings)


# Outputs: grades.csv and the feedback pages.

COLUMNS = ["assignment", "student", "notebook", "exercise", "points", "max_points", "total", "max_total", "note"]


def _exercise_note(record: dict, name: str) -> str:
    status_notes = {"missing": "not handed in", "unreadable": "file cannot be read (not a valid notebook)",
                    "failed": "notebook could not be graded"}
    report = record.get("reports", {}).get(name)
    if record.get("status") in status_notes or report is None:
        return status_notes.get(record.get("status"), "")
    if "error" in report:
        return report["error"]
    failed = [case for case in report["cases"] if not case["passed"]]
    mistakes = {case.get("mistake") for case in failed}
    if not failed:
        return "all hidden cases passed"
    if mistakes in ({"not_implemented"}, {"not_defined"}):
        return "not attempted" if mistakes == {"not_implemented"} else f"{name} is not defined"
    named = ", ".join(sorted(mistakes - {None, "not_run"}))
    return f"{len(failed)} of {len(report['cases'])} hidden cases failed" + (f" ({named})" if named else "")


def write_grades_csv(course: Path, state: dict) -> list[dict]:
    """Write grades.csv (COLUMNS) from the gradebook, one row per student and exercise; returns the rows."""
    scores, totals, rows = gradebook_scores(course), Counter(), []
    for row in scores:
        totals[row["assignment"], row["student"]] += row["score"]
        totals[row["assignment"], row["student"], "max"] += row["max_score"]
    for row in (r for r in scores if r["grade_id"].startswith("hidden_tests_")):
        name, who = row["grade_id"][len("hidden_tests_"):], (row["assignment"], row["student"])
        record = state.get(who[0], {}).get(who[1], {}).get("notebooks", {}).get(row["notebook"], {})
        rows.append({"assignment": who[0], "student": who[1], "notebook": row["notebook"], "exercise": name,
                     "points": round(row["score"], 2), "max_points": round(row["max_score"], 2),
                     "total": round(totals[who], 2), "max_total": round(totals[(*who, "max")], 2),
                     "note": _exercise_note(record, name)})
    course_order = list(EXERCISES)
    rows.sort(key=lambda r: (r["assignment"], r["student"], r["notebook"], course_order.index(r["exercise"])
                             if r["exercise"] in course_order else len(course_order), r["exercise"]))
    with (Path(course) / "grades.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def read_grades_csv(path: Path) -> list[dict]:
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
pre {{ background: #f6f6f6; padding: .6rem; white-space: pre-wrap; }} .note {{ background: #fff6d6; padding: .5rem; }}
</style></head><body>
{body}
</body></html>
"""


def write_feedback_page(page: Path, assignment: str, sid: str, record: dict, stems: list[str],
                        rows: list[dict]) -> Path:
    """A student's index.html: the total, notes, and each exercise's hidden cases with the checker's messages."""
    e = html.escape
    rows = [row for row in rows if row["assignment"] == assignment and row["student"] == sid]
    total, max_total = (rows[0]["total"], rows[0]["max_total"]) if rows else (0, 0)
    parts = [f"<h1>{e(assignment)}: feedback for {e(sid)}</h1>",
             f"<p><strong>Total: {total:g} of {max_total:g} points.</strong> Graded "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.</p>"]
    parts += [f'<p class="note">{e(note)}</p>' for note in record.get("file_notes", [])]
    for stem in stems:
        result = record.get("notebooks", {}).get(stem, {})
        parts.append(f"<h2>{e(stem)}</h2>")
        parts += [f'<p class="note">{e(note)}</p>' for note in result.get("notes", [])]
        if (page.parent / f"{stem}.html").exists():
            parts.append(f'<p><a href="{e(stem)}.html">The graded notebook with every output</a></p>')
        for row in (row for row in rows if row["notebook"] == stem):
            report = result.get("reports", {}).get(row["exercise"], {})
            text = (report_from_json(report).text() if "cases" in report else
                    f"{row['exercise']}: {row['points']:g} of {row['max_points']:g} points. {row['note']}")
            parts.append(f"<pre>{e(text)}</pre>")
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(PAGE.format(title=e(f"{assignment}: {sid}"), body="\n".join(parts)), encoding="utf-8")
    return page


# Command line.


def _points(item: str) -> tuple[str, float]:
    name, _, value = item.partition("=")
    if name not in EXERCISES or not re.fullmatch(r"\d+(\.\d*)?", value):
        raise argparse.ArgumentTypeError(f"{item!r}: write name=N with name one of {', '.join(EXERCISES)}")
    return name, float(value)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m course_instructor.grading", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    release_, grade_ = commands.add_parser("release"), commands.add_parser("grade")
    for sub in (release_, grade_):
        sub.add_argument("--course", type=Path, default=DEFAULT_COURSE, help="course directory (default classroom/)")
        sub.add_argument("--assignment", default=DEFAULT_ASSIGNMENT, help=f"default {DEFAULT_ASSIGNMENT}")
    release_.add_argument("--notebooks", nargs="*", default=None, help="numbers or names, e.g. 01 02 03 (default: all)")
    release_.add_argument("--seed", type=int, default=None, help="seed of the hidden cases (default: the course's)")
    release_.add_argument("--points", nargs="*", type=_points, default=[], help="e.g. distance_matrix=4")
    grade_.add_argument("submissions", type=Path, help="folder with one sub-folder per student")
    grade_.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, help="seconds per cell (default 300)")
    grade_.add_argument("--jobs", type=int, default=1, help="students graded at the same time (default 1)")
    grade_.add_argument("--force", action="store_true", help="grade every student again, changed or not")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        if args.command == "release":
            made = release(args.course, args.assignment, [n for n in args.notebooks or [] if n.strip()] or None,
                           seed=args.seed, points=dict(args.points))
            total = sum(points for items in made.exercises.values() for _, points in items)
            print(f"Released {args.assignment!r}: {len(made.notebooks)} notebook(s), {total:g} points")
            for stem, items in made.exercises.items():
                print(f"  {stem}: " + ", ".join(f"{name} ({points:g})" for name, points in items))
            print(f"Hand out {made.notebooks[0].parent} (zipped: {made.zip_path})")
        else:
            made = grade(args.submissions, args.course, args.assignment, args.timeout, args.force, args.jobs)
            print(f"Graded {len(made.graded)} student(s); unchanged since the last run: {len(made.unchanged)}")
            for row in {r["student"]: r for r in read_grades_csv(made.grades_csv)
                        if r["assignment"] == args.assignment}.values():
                total = f"{float(row['total']):6g} / {float(row['max_total']):g}"
                print(f"  {row['student']:<24} {total}  {row['note'][:90]}")
            print(f"Grades: {made.grades_csv}\nFeedback: {made.grades_csv.parent / 'feedback'}/<student>/"
                  f"{args.assignment}/index.html")
        for warning in made.warnings:
            print(f"warning: {warning}")
    except GradingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
