"""Classroom grading with nbgrader: release the exercises, collect a class's notebooks, grade them
with hidden tests, write grades.csv and one feedback page per student. Offline, no JupyterHub.

An instructor tool (``make release``, ``make grade``; the README's instructor section walks
through it). It needs nbgrader, from the course's ``instructor`` extra; a learner's
``import course_utils`` never imports this module.

The course directory (default ``classroom/``, git-ignored: it holds student work and grades)
has nbgrader's layout::

    classroom/
      nbgrader_config.py           written here; nbgrader's own commands work in this folder too
      gradebook.db                 nbgrader's gradebook (SQLite)
      source/<assignment>/         the instructor's version: solutions, grading metadata, hidden tests
      release/<assignment>/        what students get (and <assignment>.zip of it, for an LMS)
      submitted/<student>/<assignment>/   the collected notebooks, as graded
      autograded/<student>/<assignment>/  the executed notebooks with scores
      feedback/<student>/<assignment>/    index.html (this module's summary) + nbgrader's page per notebook
      grades.csv                   one row per student and exercise
      grading_state.json           what was graded from which file (for re-grading only what changed)

``release`` builds the source version from ``notebooks/`` at release time (nothing in
``notebooks/`` is edited): every exercise's solution cell becomes an nbgrader solution cell,
its check cell a locked read-only cell, and after the check comes a locked, autograded test
cell whose body, between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, calls
`course_instructor.hidden_tests.grade`. nbgrader's ``generate_assignment`` then removes the
solutions, the hidden tests and the outputs; the release is checked against the student copies.

``grade`` copies each student's notebooks from a folder of per-student folders into
``submitted/`` (after checking that each is a readable notebook and putting any deleted or
moved cells back into the released order), runs ``nbgrader autograde`` once per student
(a per-cell time limit, and a limit on the whole run), gives 0 with a note to whatever could
not be graded, runs ``nbgrader generate_feedback``, and writes the CSV and the feedback pages.
A student whose files did not change since they were last graded is not graded again.

Student code runs in a Jupyter kernel with the instructor's rights: this is no sandbox (see
the README for grading untrusted code inside a container).

Command line::

    python -m course_instructor.grading release [--course classroom] [--assignment triplet-loss]
        [--notebooks 01 02 03] [--seed N] [--points name=N ...]
    python -m course_instructor.grading grade SUBMISSIONS [--course classroom] [--assignment triplet-loss]
        [--timeout 300] [--force]
"""
from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import html
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from course_instructor.hidden_tests import DEFAULT_POINTS, EXERCISES, RESULT_MIME
from course_instructor.copies import ROOT, SOLUTION_BEGIN, course_notebooks, make_student_notebook

DEFAULT_COURSE = ROOT / "classroom"
DEFAULT_ASSIGNMENT = "triplet-loss"
# Seconds a single cell of a student's notebook may run (the course's slowest cell in quick mode
# takes about a minute on a 2-core CPU).
DEFAULT_TIMEOUT = 300
HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"
TEST_CELL_PREFIX = "hidden-tests-"
SCHEMA = 3
# nbgrader's own name for a cell that ran past Execute.timeout.
TIMEOUT_ERROR = "CellTimeoutError"

CONFIG = '''\
# Written by `make release` (course_instructor/grading.py). nbgrader reads this file when it runs in
# this folder, so nbgrader's own commands (nbgrader list, nbgrader formgrader, ...) work here too.
import os

c = get_config()
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
# A grade cell deleted from a submission comes back from the gradebook.
c.OverwriteCells.add_missing_cells = True
# Per-cell time limit for student code (make grade TIMEOUT=... passes its own on the command line).
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
    """Something the instructor has to fix (no release yet, nbgrader failed, ...); the message says what."""


# ---------------------------------------------------------------------------
# Finding the exercises of a notebook.


@dataclass(frozen=True)
class ExerciseCells:
    """One exercise of a course notebook: the function it asks for and where its cells are."""

    name: str
    solution: int
    check: int


def find_exercises(notebook) -> list[ExerciseCells]:
    """The exercises of a course notebook, in order: each solution cell (the code cell holding
    ``### BEGIN SOLUTION``), the function its ``def`` line names, and the check cell after it (the
    next code cell calling ``check_...(name)``)."""
    cells, found = notebook.cells, []
    for i, cell in enumerate(cells):
        if cell.cell_type != "code" or SOLUTION_BEGIN not in cell.source:
            continue
        match = re.search(r"^\s*def\s+(\w+)\s*\(", cell.source, re.MULTILINE)
        if match is None:
            raise ValueError(f"cell {i}: a solution cell without a `def` line; cannot tell which function is graded")
        name = match.group(1)
        call = re.compile(rf"\bcheck_\w+\(\s*{re.escape(name)}\b")
        check = next((j for j in range(i + 1, len(cells))
                      if cells[j].cell_type == "code" and call.search(cells[j].source)), None)
        if check is None:
            raise ValueError(f"cell {i}: no check cell calls check_...({name}) after the solution of {name}")
        found.append(ExerciseCells(name, i, check))
    return found


def select_notebooks(src: Path, wanted: list[str] | None) -> list[Path]:
    """The course notebooks to release: those named in `wanted` (numbers such as "01" or names such as
    "01_distances"), or every notebook that has an exercise."""
    notebooks = course_notebooks(Path(src))
    if not wanted:
        return [p for p in notebooks if SOLUTION_BEGIN in p.read_text(encoding="utf-8")]
    chosen = []
    for item in wanted:
        key = Path(item).stem
        matches = [p for p in notebooks if p.stem == key or p.stem.split("_")[0] == key.zfill(2)]
        if not matches:
            raise GradingError(f"no notebook {item!r} in {src}; the notebooks are "
                               f"{', '.join(p.stem for p in notebooks)}")
        for path in matches:
            if SOLUTION_BEGIN not in path.read_text(encoding="utf-8"):
                raise GradingError(f"{path.name} has no exercise (no {SOLUTION_BEGIN} cell): nothing to grade")
            if path not in chosen:
                chosen.append(path)
    return chosen


# ---------------------------------------------------------------------------
# The source (instructor) version of a notebook.


def _nbgrader_metadata(grade_id: str, *, solution: bool, grade: bool, locked: bool, points: float | None = None) -> dict:
    metadata = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": SCHEMA, "solution": solution}
    if points is not None:
        metadata["points"] = points
    return metadata


def test_cell_source(name: str, points: float, seed: int) -> str:
    """The hidden test cell of an exercise, as the instructor's version holds it."""
    return (f"# Graded: {name} is also run on cases you have not seen (hidden tests, {points:g} points). "
            "Leave this cell as it is.\n"
            f"{HIDDEN_BEGIN}\n"
            "from course_instructor.hidden_tests import grade\n"
            f"grade({name!r}, globals().get({name!r}), points={points!r}, seed={seed})\n"
            f"{HIDDEN_END}")


def make_source_notebook(master, seed: int, points: dict[str, float] | None = None):
    """The nbgrader source version of a course notebook (the input is left unchanged).

    Outputs are cleared; each exercise's solution cell gets nbgrader's solution metadata, its check cell
    is locked, and a locked, autograded hidden test cell follows the check.

    Returns:
        (notebook, [(exercise name, points), ...]).
    """
    points = {**DEFAULT_POINTS, **(points or {})}
    notebook = copy.deepcopy(master)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    exercises = find_exercises(notebook)
    for exercise in exercises:
        if exercise.name not in EXERCISES:
            raise GradingError(f"the exercise {exercise.name} has no hidden tests: add them to "
                               "course_instructor/hidden_tests.py (EXERCISES and DEFAULT_POINTS)")
    for exercise in reversed(exercises):
        worth = float(points.get(exercise.name, 1))
        notebook.cells[exercise.solution].metadata["nbgrader"] = _nbgrader_metadata(
            f"solution_{exercise.name}", solution=True, grade=False, locked=False)
        notebook.cells[exercise.check].metadata["nbgrader"] = _nbgrader_metadata(
            f"check_{exercise.name}", solution=False, grade=False, locked=True)
        test = nbformat.v4.new_code_cell(test_cell_source(exercise.name, worth, seed))
        test.id = TEST_CELL_PREFIX + exercise.name
        test.metadata["nbgrader"] = _nbgrader_metadata(f"hidden_tests_{exercise.name}", solution=False, grade=True,
                                                       locked=True, points=worth)
        notebook.cells.insert(exercise.check + 1, test)
    nbformat.validate(notebook)
    return notebook, [(e.name, float(points.get(e.name, 1))) for e in exercises]


def release_differences(release, student) -> list[str]:
    """How a released notebook differs from the student copy (`course_instructor.copies`), apart from the
    hidden test cells it adds (whose visible part must be a comment). Empty when they agree."""
    problems = []
    kept = []
    for cell in release.cells:
        if cell.get("id", "").startswith(TEST_CELL_PREFIX):
            visible = [line for line in cell.source.splitlines() if line.strip()]
            if any(not line.lstrip().startswith("#") for line in visible) or HIDDEN_BEGIN in cell.source:
                problems.append(f"the test cell {cell.id} shows code to students: {cell.source!r}")
        else:
            kept.append(cell)
    if len(kept) != len(student.cells):
        problems.append(f"{len(kept)} cells besides the test cells, the student copy has {len(student.cells)}")
    for number, (ours, theirs) in enumerate(zip(kept, student.cells)):
        if ours.cell_type != theirs.cell_type or ours.source.rstrip() != theirs.source.rstrip():
            problems.append(f"cell {number} differs: {ours.source[:60]!r} vs {theirs.source[:60]!r}")
    return problems


# ---------------------------------------------------------------------------
# Running nbgrader.


def _tool_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment nbgrader runs in: this Python's bin folder first on PATH (nbgrader calls
    `alembic` by name), and the notebooks in quick CPU mode with few threads."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("COURSE_MODE", "quick")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env.setdefault("MPLBACKEND", "Agg")
    env.pop("JUPYTER_PLATFORM_DIRS", None)
    env.update(extra or {})
    return env


def _descendants(pid: int) -> list[int]:
    """Every process started, directly or not, by pid (Jupyter kernels run in sessions of their own,
    so killing nbgrader's process group would leave them running)."""
    try:
        import psutil

        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - the process is already gone
        return []
    parents = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def run_nbgrader(args: list[str], course: Path, limit: float | None = None,
                 env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """Run one nbgrader command in the course directory; (exit status or None when stopped at `limit`
    seconds, its output). A stopped run's whole process tree, kernels included, is killed."""
    command = [sys.executable, "-m", "nbgrader", *args]
    process = subprocess.Popen(command, cwd=course, env=_tool_environment(env), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=limit)
        return process.returncode, output
    except subprocess.TimeoutExpired:
        for pid in [*_descendants(process.pid), process.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        output, _ = process.communicate()
        return None, output


def write_config(course: Path, timeout: int = DEFAULT_TIMEOUT) -> Path:
    path = Path(course) / "nbgrader_config.py"
    path.write_text(CONFIG.format(timeout=int(timeout)), encoding="utf-8")
    return path


def _db_url(course: Path) -> str:
    return f"sqlite:///{Path(course).resolve() / 'gradebook.db'}"


# ---------------------------------------------------------------------------
# Release.


@dataclass
class Release:
    """What `release` wrote: the released notebooks, their exercises and points, and warnings."""

    assignment: str
    notebooks: list[Path]
    exercises: dict[str, list[tuple[str, float]]]
    seed: int
    zip_path: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(points for items in self.exercises.values() for _, points in items)


def _seed(course: Path, seed: int | None) -> int:
    """The seed of the hidden cases: given, or the one this course directory keeps, or a new random one."""
    path = Path(course) / "hidden_seed.txt"
    if seed is None and path.exists():
        seed = int(path.read_text().strip())
    if seed is None:
        seed = secrets.randbelow(10**9)
    path.write_text(f"{seed}\n")
    return int(seed)


def release(course: Path = DEFAULT_COURSE, assignment: str = DEFAULT_ASSIGNMENT, notebooks: list[str] | None = None,
            src: Path = ROOT / "notebooks", seed: int | None = None, points: dict[str, float] | None = None,
            student_copies: Path | None = ROOT / "student") -> Release:
    """Write the source version of the chosen notebooks and let nbgrader generate the student release.

    Args:
        course: the course directory (created when missing).
        assignment: the assignment's name in nbgrader.
        notebooks: numbers or names of the notebooks to release; None for every notebook with an exercise.
        src: the course notebooks (read only).
        seed: seed of the hidden random cases; None keeps the course directory's (or draws one).
        points: points per exercise, overriding `hidden_tests.DEFAULT_POINTS`.
        student_copies: the committed student copies, compared with the release (a warning when stale).
    Returns:
        Release.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", assignment):
        raise GradingError(f"assignment name {assignment!r}: use letters, digits, '_', '.' and '-'")
    course = Path(course).resolve()
    chosen = select_notebooks(src, notebooks)
    if not chosen:
        raise GradingError(f"no notebook with an exercise in {src}")
    course.mkdir(parents=True, exist_ok=True)
    write_config(course)
    seed = _seed(course, seed)
    source_dir = course / "source" / assignment
    if source_dir.exists():
        shutil.rmtree(source_dir)
    source_dir.mkdir(parents=True)
    exercises = {}
    for path in chosen:
        source, items = make_source_notebook(nbformat.read(path, as_version=4), seed, points)
        nbformat.write(source, source_dir / path.name)
        exercises[path.stem] = items
    status, output = run_nbgrader(["generate_assignment", assignment, "--force"], course)
    released = [course / "release" / assignment / path.name for path in chosen]
    if status != 0 or not all(p.exists() for p in released):
        raise GradingError(f"nbgrader generate_assignment failed:\n{output[-4000:]}")
    result = Release(assignment, released, exercises, seed, course / "release" / f"{assignment}.zip")
    for path, out in zip(chosen, released):
        problems = release_differences(nbformat.read(out, as_version=4),
                                       make_student_notebook(nbformat.read(path, as_version=4)))
        if problems:
            raise GradingError(f"the release of {path.name} does not match its student copy:\n  " + "\n  ".join(problems))
        committed = Path(student_copies) / path.name if student_copies else None
        if committed is not None and committed.exists():
            if release_differences(nbformat.read(out, as_version=4), nbformat.read(committed, as_version=4)):
                result.warnings.append(f"{committed} differs from the release of {path.name}: run `make student-copies` "
                                       "so that the committed student copies match")
    with zipfile.ZipFile(result.zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in released:
            archive.write(path, f"{assignment}/{path.name}")
    return result


# ---------------------------------------------------------------------------
# Collecting: a folder of per-student folders -> submitted/<student>/<assignment>/.


def student_id(folder_name: str) -> str:
    """nbgrader's id for a student folder: letters, digits and _ . @ - (anything else becomes _)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.@-]", "_", folder_name.strip()).strip("._")
    return cleaned or "student"


def _notebook_files(folder: Path) -> list[Path]:
    skip = {".ipynb_checkpoints", "__MACOSX"}
    return sorted(p for p in folder.rglob("*.ipynb")
                  if p.is_file() and not any(part in skip or part.startswith(".") for part in p.relative_to(folder).parts))


def match_files(folder: Path, stems: list[str]) -> tuple[dict[str, Path | None], list[str]]:
    """Which file of a student's folder is which notebook of the assignment, and notes on the rest.

    A file named exactly like the notebook wins; else one whose name contains the notebook's name
    (an LMS often adds the student's name or a number); else one starting with the notebook's number.
    Among several candidates the most recently modified is used."""
    files = _notebook_files(folder)
    chosen: dict[str, Path | None] = {}
    notes = []
    used = set()
    for stem in stems:
        number = stem.split("_")[0]
        for rule in (lambda p: p.stem == stem, lambda p: stem in p.stem,
                     lambda p: re.match(rf"{re.escape(number)}(?!\d)", p.stem) is not None):
            candidates = [p for p in files if p not in used and rule(p)]
            if candidates:
                break
        if not candidates:
            chosen[stem] = None
            continue
        pick = max(candidates, key=lambda p: (p.stat().st_mtime, str(p)))
        if len(candidates) > 1:
            notes.append(f"several files for {stem}: graded {pick.relative_to(folder)} (the newest), ignored "
                         + ", ".join(str(p.relative_to(folder)) for p in candidates if p != pick))
        if pick.name != f"{stem}.ipynb":
            notes.append(f"{pick.relative_to(folder)} graded as {stem}.ipynb")
        chosen[stem] = pick
        used.update(candidates)
    for path in files:
        if path not in used:
            notes.append(f"ignored {path.relative_to(folder)}: not a notebook of this assignment")
    return chosen, notes


def read_submission(raw: bytes):
    """The notebook in a submitted file, or (None, why it cannot be read).

    A notebook of an older format (no cell ids) is upgraded, and cells with the same id (pasted
    by some editors) get new ones, so that the notebook is valid for nbgrader."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return None, f"not a text file ({error})"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return None, f"not valid JSON ({error})"
    if not isinstance(data, dict) or not isinstance(data.get("cells", data.get("worksheets")), list):
        return None, "valid JSON, but not a Jupyter notebook (no cells)"
    try:
        notebook = nbformat.reads(text, as_version=4)
        if notebook.nbformat_minor < 5:
            notebook.nbformat_minor = 5
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
    """The cell's first line that says something (not blank, not an NBVAL marker), shortened."""
    line = next((line.strip() for line in cell.source.splitlines()
                 if line.strip() and not line.strip().startswith("# NBVAL")), "")
    return (line[:57] + "...") if len(line) > 60 else line


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _defines(cell, name: str) -> bool:
    return cell.cell_type == "code" and re.search(rf"^\s*def\s+{re.escape(name)}\s*\(", cell.source, re.MULTILINE) is not None


def reassemble(submitted, released) -> tuple[object, list[str]]:
    """Put a submission's cells back into the released order; restore released cells it lacks.

    Each released cell is found in the submission by its nbgrader grade id, else by its cell id,
    else by identical source. Found cells keep the student's content (nbgrader restores the locked
    ones from the gradebook anyway) and are put in the released order; a cell the student added
    stays after the released cell it followed; a released cell that is missing comes back from
    the release (for a solution cell that is the blank stub, unless another cell defines the
    function). Matched cells get the release's nbgrader metadata back if a tool dropped it. A
    submission already in order keeps its cells as they are.

    Returns:
        (notebook, notes saying what was moved or restored).
    """
    cells = released.cells
    by_grade_id = {_grade_id(c): i for i, c in enumerate(cells) if _grade_id(c)}
    by_id = {c.get("id"): i for i, c in enumerate(cells) if c.get("id")}
    by_source: dict[tuple[str, str], list[int]] = {}
    for i, c in enumerate(cells):
        by_source.setdefault((c.cell_type, c.source), []).append(i)
    owner: list[int | None] = []  # for each submitted cell: the released cell it is, or None (added)
    taken: set[int] = set()
    for cell in submitted.cells:
        match = None
        grade_id = _grade_id(cell)
        if grade_id in by_grade_id and cells[by_grade_id[grade_id]].cell_type == cell.cell_type:
            match = by_grade_id[grade_id]
        elif cell.get("id") in by_id and cells[by_id[cell.get("id")]].cell_type == cell.cell_type \
                and _grade_id(cells[by_id[cell.get("id")]]) is None:
            match = by_id[cell.get("id")]
        if match is None or match in taken:
            match = next((i for i in by_source.get((cell.cell_type, cell.source), []) if i not in taken), None)
        if match is not None:
            taken.add(match)
        owner.append(match)
    found_order = [i for i in owner if i is not None]
    missing = [i for i in range(len(cells)) if i not in taken]
    submitted = copy.deepcopy(submitted)
    relabelled = 0
    for cell, match in zip(submitted.cells, owner):  # a tool may have dropped nbgrader's metadata
        wanted = cells[match].metadata.get("nbgrader") if match is not None else None
        if wanted is not None and cell.metadata.get("nbgrader") != wanted:
            cell.metadata["nbgrader"] = copy.deepcopy(wanted)
            relabelled += 1
    relabel_note = [f"the grading metadata of {relabelled} cell(s) was missing or changed and was restored"] \
        if relabelled else []
    if found_order == sorted(found_order) and not missing:
        return submitted, relabel_note
    # Cells the student added travel with the released cell before them (or open the notebook).
    followers: dict[int | None, list] = {}
    anchor = None
    for cell, match in zip(submitted.cells, owner):
        if match is None:
            followers.setdefault(anchor, []).append(cell)
        else:
            anchor = match
    added = [cell for group in followers.values() for cell in group]
    notes = list(relabel_note)
    result = copy.deepcopy(submitted)
    result.cells = list(followers.get(None, []))
    own = {match: cell for cell, match in zip(submitted.cells, owner) if match is not None}
    restored, skipped = [], []
    for i, released_cell in enumerate(cells):
        if i in own:
            result.cells.append(own[i])
        else:
            grade_id = _grade_id(released_cell) or ""
            name = grade_id[len("solution_"):] if grade_id.startswith("solution_") else None
            if name and any(_defines(cell, name) for cell in added):
                skipped.append(f"the solution cell of {name} was deleted; {name} is defined in a cell of the "
                               "student's own, which is graded instead")
            else:
                result.cells.append(copy.deepcopy(released_cell))
                what = (f"the solution cell of {name} (restored as the blank stub, so {name} cannot score)"
                        if name else f"cell {i + 1} ({released_cell.cell_type}: {_first_line(released_cell)!r})")
                restored.append(what)
        result.cells += followers.get(i, [])
    if found_order != sorted(found_order):
        notes.append("cells were out of the released order and were put back in it before grading")
    if restored:
        notes.append(f"{len(restored)} deleted cell(s) restored from the release: " + "; ".join(restored[:6])
                     + ("; ..." if len(restored) > 6 else ""))
    notes += skipped
    nbformat.validate(result)
    return result, notes


# ---------------------------------------------------------------------------
# Reading a graded notebook.


def _cell_label(number: int, cell) -> str:
    return f"cell {number + 1} (`{_first_line(cell)}`)"


def read_graded(path: Path, timeout: int) -> tuple[dict[str, dict], list[str]]:
    """The hidden tests' reports and the notes (errors, time-outs) of an autograded notebook.

    Returns:
        ({exercise: report as JSON, or {"error": ...} when its test cell did not report}, notes).
    """
    notebook = nbformat.read(path, as_version=4)
    reports, notes = {}, []
    errors = []
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        grade_id = _grade_id(cell) or ""
        failures = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if grade_id.startswith("hidden_tests_"):
            name = grade_id[len("hidden_tests_"):]
            data = [o["data"][RESULT_MIME] for o in cell.get("outputs", [])
                    if o.get("output_type") == "display_data" and RESULT_MIME in o.get("data", {})]
            if data and any(o.get("output_type") == "execute_result" for o in cell.get("outputs", [])):
                reports[name] = data[-1] if isinstance(data[-1], dict) else json.loads(data[-1])
            elif failures:
                error = next((e for e in failures if e.get("ename") == TIMEOUT_ERROR), failures[0])
                why = (f"did not finish within {timeout} s" if error.get("ename") == TIMEOUT_ERROR
                       else f"raised {error.get('ename')}: {error.get('evalue', '')[:200]}")
                reports[name] = {"error": f"the hidden tests of {name} did not run: their cell {why}"}
            else:
                reports[name] = {"error": f"the hidden tests of {name} gave no result"}
            continue
        if any(error.get("ename") == TIMEOUT_ERROR for error in failures):
            errors.append(f"{_cell_label(number, cell)} did not finish within {timeout} s and was interrupted")
        elif failures:
            error = failures[0]
            errors.append(f"{_cell_label(number, cell)} raised {error.get('ename')}: "
                          f"{str(error.get('evalue', ''))[:160]}")
    if errors:
        notes.append(f"{len(errors)} cell(s) failed while grading: " + "; ".join(errors[:5])
                     + ("; ..." if len(errors) > 5 else ""))
    return reports, notes


# ---------------------------------------------------------------------------
# The gradebook.


def _set_zero(course: Path, assignment: str, student: str, notebooks: list[str]) -> None:
    """Score 0 for every grade cell of these notebooks of a student (creating the submission if needed)."""
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
                grade.auto_score = 0
                grade.needs_manual_grade = False
        gradebook.db.commit()


def gradebook_scores(course: Path) -> list[dict]:
    """Every graded cell of every submission in the gradebook: assignment, student, notebook, grade id,
    score, max score."""
    from nbgrader.api import Gradebook

    rows = []
    with Gradebook(_db_url(course)) as gradebook:
        for assignment in gradebook.assignments:
            for submission in gradebook.assignment_submissions(assignment.name):
                for notebook in submission.notebooks:
                    for grade in notebook.grades:
                        rows.append({"assignment": assignment.name, "student": submission.student.id,
                                     "notebook": notebook.name, "grade_id": grade.name,
                                     "score": float(grade.score), "max_score": float(grade.max_score)})
    return rows


# ---------------------------------------------------------------------------
# Grading.


@dataclass
class NotebookResult:
    """How one notebook of one student was graded."""

    status: str  # "graded", "missing", "unreadable", "failed"
    notes: list[str]
    reports: dict[str, dict]
    key: str
    file: str | None = None


@dataclass
class Grading:
    """What `grade` did: who was graded (student -> notebooks), who was unchanged, the outputs."""

    graded: dict[str, list[str]]
    unchanged: list[str]
    grades_csv: Path
    feedback: dict[str, Path]
    warnings: list[str]


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def _load_state(course: Path) -> dict:
    path = course / "grading_state.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _save_state(course: Path, state: dict) -> None:
    path = course / "grading_state.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
    temporary.replace(path)


def _remove(path: Path) -> None:
    if path.exists():
        path.chmod(0o644)
        path.unlink()


def _assignment_notebooks(course: Path, assignment: str) -> list[str]:
    from nbgrader.api import Gradebook, MissingEntry

    source = course / "source" / assignment
    if not source.is_dir() or not (course / "gradebook.db").exists():
        raise GradingError(f"no release of {assignment!r} in {course}: run `make release` first")
    with Gradebook(_db_url(course)) as gradebook:
        try:
            names = sorted(notebook.name for notebook in gradebook.find_assignment(assignment).notebooks)
        except MissingEntry:
            raise GradingError(f"the gradebook has no assignment {assignment!r}: run `make release` first") from None
    return names


def _untouched(notebook, released) -> list[str]:
    """The exercises whose solution cell is still the released stub."""
    stubs = {_grade_id(c): c.source.strip() for c in released.cells
             if (_grade_id(c) or "").startswith("solution_")}
    return [grade_id[len("solution_"):] for grade_id, stub in stubs.items()
            if any(_grade_id(c) == grade_id and c.source.strip() == stub for c in notebook.cells)]


def grade(submissions: Path, course: Path = DEFAULT_COURSE, assignment: str = DEFAULT_ASSIGNMENT,
          timeout: int = DEFAULT_TIMEOUT, force: bool = False, case_seconds: float | None = None, jobs: int = 1,
          log=print) -> Grading:
    """Grade every student folder in `submissions`; re-grade only what changed since the last run.

    Args:
        submissions: a folder with one sub-folder per student holding their notebooks (any depth).
        course: the course directory `release` wrote.
        assignment: the assignment to grade.
        timeout: seconds each cell of a student's notebook may run before it is interrupted.
        force: grade everybody again, changed or not.
        case_seconds: time limit of each hidden case (default `hidden_tests.CASE_SECONDS`).
        jobs: how many students are graded at the same time (each in its own kernel).
        log: where progress lines go.
    Returns:
        Grading.
    """
    course, submissions = Path(course).resolve(), Path(submissions).resolve()
    if not submissions.is_dir():
        raise GradingError(f"{submissions} is not a folder (expected one sub-folder per student)")
    stems = _assignment_notebooks(course, assignment)
    released = {stem: nbformat.read(course / "release" / assignment / f"{stem}.ipynb", as_version=4) for stem in stems}
    source_digest = {stem: _digest((course / "source" / assignment / f"{stem}.ipynb").read_bytes()) for stem in stems}
    state = _load_state(course)
    records = state.setdefault(assignment, {})
    warnings = [f"ignored {p.name}: put each student's files in a folder named after the student"
                for p in sorted(submissions.iterdir()) if p.is_file()]
    folders = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    ids: dict[str, Path] = {}
    for folder in folders:
        sid = student_id(folder.name)
        while sid in ids:
            sid += "-2"
        if sid != folder.name:
            warnings.append(f"the folder {folder.name!r} is graded as student {sid!r}")
        ids[sid] = folder
    work, unchanged = {}, []
    for sid, folder in ids.items():
        files, file_notes = match_files(folder, stems)
        record = records.setdefault(sid, {"notebooks": {}})
        record["folder"], record["file_notes"] = folder.name, file_notes
        todo = {}
        for stem in stems:
            raw = files[stem].read_bytes() if files[stem] else b""
            key = _digest(raw, source_digest[stem].encode(), b"present" if files[stem] else b"missing")
            previous = record["notebooks"].get(stem)
            if force or previous is None or previous.get("key") != key:
                todo[stem] = (files[stem], raw, key)
        if todo:
            work[sid] = (folder, todo)
        else:
            unchanged.append(sid)
    graded = {}
    log(f"{len(work)} student(s) to grade, {len(unchanged)} unchanged since they were last graded")
    with ThreadPoolExecutor(max_workers=max(1, int(jobs))) as pool:
        started = time.monotonic()
        running = {pool.submit(_grade_student_safely, course, assignment, sid, todo, released, timeout, folder, case_seconds): sid
                   for sid, (folder, todo) in work.items()}
        for number, future in enumerate(as_completed(running), start=1):
            sid = running[future]
            results = future.result()
            records[sid]["notebooks"].update({stem: result.__dict__ for stem, result in results.items()})
            graded[sid] = list(results)
            _save_state(course, state)
            statuses = ", ".join(f"{stem} {result.status}" for stem, result in results.items())
            log(f"[{number}/{len(work)}] {sid}: {statuses} ({time.monotonic() - started:.0f} s)")
    if graded:
        with_graded = {sid for sid in records
                       if any(r["status"] == "graded" for r in records[sid]["notebooks"].values())}
        _generate_feedback(course, assignment, sorted(graded), with_graded <= set(graded), warnings)
    feedback = {}
    for sid in records:
        page = course / "feedback" / sid / assignment / "index.html"
        if sid in graded or not page.exists():
            feedback[sid] = write_feedback_page(course, assignment, sid, records[sid], stems)
        else:
            feedback[sid] = page
    _save_state(course, state)
    grades_csv = write_grades_csv(course, state)
    return Grading(graded, unchanged, grades_csv, feedback, warnings)


def _grade_student_safely(course: Path, assignment: str, sid: str, todo: dict, released: dict, timeout: int,
                          folder: Path, case_seconds: float | None = None) -> dict[str, NotebookResult]:
    """_grade_student, but an unexpected error grades that student's notebooks 0 with a note instead of
    stopping the grading of the others."""
    try:
        return _grade_student(course, assignment, sid, todo, released, timeout, folder, case_seconds)
    except Exception as error:  # noqa: BLE001 - one student's hand-in must not stop the class
        note = (f"the grader failed on this hand-in ({type(error).__name__}: {error}), so it scores 0; "
                "grade it by hand")
        try:
            _set_zero(course, assignment, sid, list(todo))
        except Exception as again:  # noqa: BLE001
            note += f" (and the gradebook could not be updated: {again})"
        return {stem: NotebookResult("failed", [note], {}, key, None) for stem, (_, _, key) in todo.items()}


def _grade_student(course: Path, assignment: str, sid: str, todo: dict, released: dict, timeout: int,
                   folder: Path, case_seconds: float | None = None) -> dict[str, NotebookResult]:
    """Copy one student's changed notebooks into submitted/, autograde them, read the results."""
    target = course / "submitted" / sid / assignment
    target.mkdir(parents=True, exist_ok=True)
    results, to_run = {}, []
    for stem, (path, raw, key) in todo.items():
        _remove(target / f"{stem}.ipynb")
        _remove(course / "autograded" / sid / assignment / f"{stem}.ipynb")
        shown = str(path.relative_to(folder)) if path else None
        if path is None:
            results[stem] = NotebookResult("missing", [f"{stem}.ipynb was not handed in: 0 points"], {}, key, shown)
            continue
        notebook, why = read_submission(raw)
        if notebook is None:
            results[stem] = NotebookResult("unreadable", [f"{shown} cannot be read, so it was graded 0: {why}. "
                                                          "Ask the student to hand in the file again."], {}, key, shown)
            continue
        notebook, notes = reassemble(notebook, released[stem])
        untouched = _untouched(notebook, released[stem])
        exercises = [(_grade_id(c) or "")[len("solution_"):] for c in released[stem].cells
                     if (_grade_id(c) or "").startswith("solution_")]
        if untouched and len(untouched) == len(exercises):
            notes.append("this is the untouched student copy: no exercise was attempted")
        elif untouched:
            notes.append(f"not attempted (the solution cell is still the stub): {', '.join(untouched)}")
        nbformat.write(notebook, target / f"{stem}.ipynb")
        results[stem] = NotebookResult("graded", notes, {}, key, shown)
        to_run.append(stem)
    everything = len(to_run) == len(released) and len(to_run) > 1
    limit_per_notebook = 3 * timeout + 120
    runs = [("*", to_run)] if everything else [(stem, [stem]) for stem in to_run]
    for pattern, stems in runs:
        started = time.time()
        for attempt in range(2):  # once more when another grading job held the gradebook too long
            status, output = run_nbgrader(["autograde", assignment, "--student", sid, "--notebook", pattern, "--force",
                                           f"--Execute.timeout={int(timeout)}"], course,
                                          limit=limit_per_notebook * len(stems),
                                          env={"HIDDEN_CASE_SECONDS": str(case_seconds)} if case_seconds else None)
            if status == 0 or "database is locked" not in output:
                break
        for stem in stems:
            graded = course / "autograded" / sid / assignment / f"{stem}.ipynb"
            if graded.exists() and graded.stat().st_mtime >= started - 1:
                reports, notes = read_graded(graded, timeout)
                results[stem].reports = reports
                results[stem].notes += notes
            else:
                results[stem].status = "failed"
                results[stem].notes.insert(0, _why_failed(status, output, limit_per_notebook * len(stems)))
    zero = [stem for stem, result in results.items() if result.status != "graded"]
    if zero:
        _set_zero(course, assignment, sid, zero)
    return results


def _why_failed(status: int | None, output: str, limit: float) -> str:
    if status is None:
        return (f"grading was stopped after {limit:g} s (the limit for the whole notebook), so it scores 0; "
                "grade it by hand if it deserves more")
    known = [line.strip() for line in output.splitlines()
             if "DeadKernelError" in line or "Kernel died" in line or "UnresponsiveKernelError" in line
             or "kernel became unresponsive" in line]
    reason = known[0] if known else next((line.strip() for line in reversed(output.splitlines())
                                          if "Error" in line or "error" in line), f"exit status {status}")
    reason = re.sub(r"^\[\w+ \| \w+\]\s*", "", reason)  # nbgrader's log prefix
    return f"the notebook could not be graded ({reason[:200]}), so it scores 0; grade it by hand if it deserves more"


def _generate_feedback(course: Path, assignment: str, students: list[str], everyone: bool, warnings: list[str]) -> None:
    """nbgrader's feedback page of each graded notebook: one run for the whole class when everybody
    was graded, else one run per student."""
    with_graded = [sid for sid in students if any((course / "autograded" / sid / assignment).glob("*.ipynb"))]
    for sid in set(students) - set(with_graded):
        shutil.rmtree(course / "feedback" / sid / assignment, ignore_errors=True)
    for group in (["*"] if everyone and with_graded else with_graded):
        status, output = run_nbgrader(["generate_feedback", assignment, "--student", group, "--force"], course,
                                      limit=1800)
        if status != 0:
            warnings.append(f"nbgrader generate_feedback --student {group} failed: {output[-1500:]}")


# ---------------------------------------------------------------------------
# Outputs: grades.csv and the feedback pages.


def _exercise_rows(course: Path, state: dict) -> list[dict]:
    """One row per student and exercise, from the gradebook, with the totals and a short note."""
    rows = []
    scores = gradebook_scores(course)
    totals: dict[tuple[str, str], list[float]] = {}
    for row in scores:
        total = totals.setdefault((row["assignment"], row["student"]), [0.0, 0.0])
        total[0] += row["score"]
        total[1] += row["max_score"]
    for row in scores:
        if not row["grade_id"].startswith("hidden_tests_"):
            continue
        name = row["grade_id"][len("hidden_tests_"):]
        record = state.get(row["assignment"], {}).get(row["student"], {}).get("notebooks", {}).get(row["notebook"], {})
        rows.append({
            "assignment": row["assignment"], "student": row["student"], "notebook": row["notebook"], "exercise": name,
            "points": round(row["score"], 2), "max_points": round(row["max_score"], 2),
            "total": round(totals[(row["assignment"], row["student"])][0], 2),
            "max_total": round(totals[(row["assignment"], row["student"])][1], 2),
            "note": _exercise_note(record, name),
        })
    order = {}
    for assignment, students in state.items():
        for sid, record in students.items():
            for stem, result in record.get("notebooks", {}).items():
                for position, name in enumerate(result.get("reports", {})):
                    order[(assignment, stem, name)] = position
    rows.sort(key=lambda r: (r["assignment"], r["student"], r["notebook"],
                             order.get((r["assignment"], r["notebook"], r["exercise"]), 99), r["exercise"]))
    return rows


def _exercise_note(record: dict, name: str) -> str:
    status = record.get("status")
    if status == "missing":
        return "not handed in"
    if status == "unreadable":
        return "file cannot be read (not a valid notebook)"
    if status == "failed":
        return "notebook could not be graded"
    report = record.get("reports", {}).get(name)
    if report is None:
        return ""
    if "error" in report:
        return report["error"]
    failed = [case for case in report["cases"] if not case["passed"]]
    if not failed:
        return "all hidden cases passed"
    if all(case.get("mistake") == "not_implemented" for case in failed):
        return "not attempted"
    if all(case.get("mistake") in ("not_defined",) for case in failed):
        return f"{name} is not defined"
    mistakes = sorted({case["mistake"] for case in failed if case.get("mistake") not in (None, "not_run")})
    named = f" ({', '.join(mistakes)})" if mistakes else ""
    return f"{len(failed)} of {len(report['cases'])} hidden cases failed{named}"


def write_grades_csv(course: Path, state: dict | None = None) -> Path:
    """grades.csv: assignment, student, notebook, exercise, points, max_points, total, max_total, note."""
    course = Path(course)
    state = _load_state(course) if state is None else state
    path = course / "grades.csv"
    columns = ["assignment", "student", "notebook", "exercise", "points", "max_points", "total", "max_total", "note"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(_exercise_rows(course, state))
    return path


def read_grades_csv(path: Path) -> list[dict]:
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }} td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; }}
.pass {{ color: #176117; }} .fail {{ color: #a01818; }} pre {{ background: #f6f6f6; padding: .6rem; white-space: pre-wrap; }}
.note {{ background: #fff6d6; padding: .5rem .8rem; border-left: 4px solid #e0b300; margin: .4rem 0; }}
</style></head><body>
{body}
</body></html>
"""


def write_feedback_page(course: Path, assignment: str, sid: str, record: dict, stems: list[str]) -> Path:
    """feedback/<student>/<assignment>/index.html: the points of each exercise, which hidden cases failed
    with the checker's message, the notes on the hand-in, and links to nbgrader's page of each notebook."""
    scores = [row for row in gradebook_scores(course) if row["assignment"] == assignment and row["student"] == sid]
    points = {(row["notebook"], row["grade_id"]): row for row in scores}
    total = sum(row["score"] for row in scores)
    max_total = sum(row["max_score"] for row in scores)
    e = html.escape
    parts = [f"<h1>{e(assignment)}: feedback for {e(sid)}</h1>",
             f"<p><strong>Total: {total:g} of {max_total:g} points.</strong> Graded "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.</p>"]
    for note in record.get("file_notes", []):
        parts.append(f'<div class="note">{e(note)}</div>')
    for stem in stems:
        result = record.get("notebooks", {}).get(stem, {})
        parts.append(f"<h2>{e(stem)}</h2>")
        for note in result.get("notes", []):
            parts.append(f'<div class="note">{e(note)}</div>')
        if (Path(course) / "feedback" / sid / assignment / f"{stem}.html").exists():
            parts.append(f'<p><a href="{e(stem)}.html">The graded notebook with every output</a></p>')
        rows = sorted(((gid, row) for (nb, gid), row in points.items() if nb == stem and gid.startswith("hidden_tests_")))
        if not rows:
            continue
        parts.append("<table><tr><th>exercise</th><th>points</th><th>hidden cases</th></tr>")
        details = []
        for gid, row in rows:
            name = gid[len("hidden_tests_"):]
            report = result.get("reports", {}).get(name, {})
            cases = report.get("cases", [])
            passed = sum(case["passed"] for case in cases)
            summary = f"{passed} of {len(cases)} passed" if cases else e(_exercise_note(result, name) or "-")
            parts.append(f"<tr><td><code>{e(name)}</code></td><td>{row['score']:g} of {row['max_score']:g}</td>"
                         f"<td>{summary}</td></tr>")
            if "error" in report:
                details.append(f"<h3><code>{e(name)}</code></h3><p class=\"fail\">{e(report['error'])}</p>")
            elif cases and passed < len(cases):
                items = []
                for case in cases:
                    mark = '<span class="pass">passed</span>' if case["passed"] else '<span class="fail">failed</span>'
                    message = f"<pre>{e(case['message'])}</pre>" if not case["passed"] and case.get("message") else ""
                    items.append(f"<li>{mark}: {e(case['description'])}{message}</li>")
                details.append(f"<h3><code>{e(name)}</code></h3><ul>{''.join(items)}</ul>")
        parts.append("</table>")
        parts += details
    target = Path(course) / "feedback" / sid / assignment
    target.mkdir(parents=True, exist_ok=True)
    page = target / "index.html"
    page.write_text(PAGE.format(title=e(f"{assignment}: {sid}"), body="\n".join(parts)), encoding="utf-8")
    return page


def summary_lines(course: Path, assignment: str) -> list[str]:
    """One line per student: total of max points, and the first note."""
    totals: dict[str, list[float]] = {}
    for row in gradebook_scores(course):
        if row["assignment"] == assignment:
            total = totals.setdefault(row["student"], [0.0, 0.0])
            total[0] += row["score"]
            total[1] += row["max_score"]
    state = _load_state(course).get(assignment, {})
    lines = []
    for sid in sorted(totals):
        notes = [n for r in state.get(sid, {}).get("notebooks", {}).values() for n in r.get("notes", [])]
        first = f"  ({notes[0][:90]}{'...' if len(notes[0]) > 90 else ''})" if notes else ""
        lines.append(f"  {sid:<24} {totals[sid][0]:6g} / {totals[sid][1]:g}{first}")
    return lines


# ---------------------------------------------------------------------------
# Command line.


def _points(items: list[str]) -> dict[str, float]:
    chosen = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in EXERCISES or not value:
            raise GradingError(f"--points {item!r}: write name=N with name one of {', '.join(EXERCISES)}")
        chosen[name] = float(value)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_instructor.grading", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("release", "grade"):
        sub = commands.add_parser(name)
        sub.add_argument("--course", type=Path, default=DEFAULT_COURSE, help="the course directory (default classroom/)")
        sub.add_argument("--assignment", default=DEFAULT_ASSIGNMENT, help=f"the assignment (default {DEFAULT_ASSIGNMENT})")
        if name == "release":
            sub.add_argument("--notebooks", nargs="*", default=None, help="numbers or names, e.g. 01 02 03 (default: all with exercises)")
            sub.add_argument("--seed", type=int, default=None, help="seed of the hidden random cases (default: kept per course directory)")
            sub.add_argument("--points", nargs="*", default=[], help="points per exercise, e.g. distance_matrix=4")
        else:
            sub.add_argument("submissions", type=Path, help="folder with one sub-folder per student")
            sub.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, help="seconds per cell (default 300)")
            sub.add_argument("--case-seconds", type=float, default=None,
                             help="seconds each hidden case may run (default 10)")
            sub.add_argument("--jobs", type=int, default=1, help="students graded at the same time (default 1)")
            sub.add_argument("--force", action="store_true", help="grade every student again, changed or not")
    args = parser.parse_args(argv)
    try:
        if args.command == "release":
            made = release(args.course, args.assignment, [n for n in (args.notebooks or []) if n.strip()] or None,
                           seed=args.seed, points=_points(args.points))
            print(f"Released {args.assignment!r}: {len(made.notebooks)} notebook(s), {made.total:g} points")
            for stem, items in made.exercises.items():
                print(f"  {stem}: " + ", ".join(f"{name} ({points:g})" for name, points in items))
            print(f"Hand out {made.notebooks[0].parent} (zipped: {made.zip_path})")
            for warning in made.warnings:
                print(f"warning: {warning}")
        else:
            done = grade(args.submissions, args.course, args.assignment, args.timeout, args.force, args.case_seconds,
                         args.jobs)
            print(f"Graded {len(done.graded)} student(s); unchanged since the last run: {len(done.unchanged)}")
            print("\n".join(summary_lines(args.course, args.assignment)))
            print(f"Grades: {done.grades_csv}")
            print(f"Feedback: {Path(args.course).resolve() / 'feedback'}/<student>/{args.assignment}/index.html")
            for warning in done.warnings:
                print(f"warning: {warning}")
    except GradingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
