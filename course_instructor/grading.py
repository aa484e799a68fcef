"""Classroom grading with nbgrader, offline: `release` every exercise with hidden tests; `grade` every
student of a folder of per-student folders into nbgrader's gradebook, grades.csv and nbgrader's feedback.
Student code runs with the instructor's rights: this is no sandbox (README, "Grading a class").

    python -m course_instructor.grading release|grade [SUBMISSIONS] [--course classroom] [--assignment A]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import os
import re
import secrets
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

from course_instructor.copies import ROOT, SOLUTION_BEGIN, course_notebooks
from course_instructor.hidden_tests import DEFAULT_POINTS, EXERCISES, RESULT_MIME

DEFAULT_COURSE = ROOT / "classroom"
DEFAULT_ASSIGNMENT = "triplet-loss"
DEFAULT_TIMEOUT = 300  # seconds per cell; the course's slowest cell takes about a minute on 2 cores
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
TEST_CELL_PREFIX = "hidden-tests-"
TIMEOUT_ERROR = "CellTimeoutError"  # nbgrader's name for a cell that ran past Execute.timeout
COLUMNS = ["assignment", "student", "notebook", "exercise", "points", "max_points", "total", "max_total", "note"]
BY_HAND = "0 points, grade it by hand"

CONFIG = '''\
# Written by `make release` (course_instructor/grading.py); nbgrader's own commands work in this folder.
c = get_config()
c.Execute.timeout = {timeout}
c.Execute.interrupt_on_timeout = True
c.GenerateFeedback.preprocessors = [  # feedback shows each hidden test cell's results, never its code
    "nbgrader.preprocessors.GetGrades", "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "nbgrader.preprocessors.ClearHiddenTests"]
'''


class GradingError(RuntimeError):
    """Something the instructor has to fix; the message says what."""


def find_exercises(notebook) -> list[tuple[str, int, int]]:
    """(name its `def` gives, solution cell, next cell calling check_...(name)) of each exercise."""
    cells, found = notebook.cells, []
    for i, cell in enumerate(cells):
        name = re.search(r"^\s*def\s+(\w+)\s*\(", cell.source, re.MULTILINE) if SOLUTION_BEGIN in cell.source else None
        check = name and next((j for j in range(i + 1, len(cells)) if cells[j].cell_type == "code"
                               and re.search(rf"\bcheck_\w+\(\s*{name[1]}\b", cells[j].source)), None)
        if SOLUTION_BEGIN in cell.source and not check:
            raise GradingError(f"cell {i}: a solution cell needs a `def` line and a later cell calling check_...(name)")
        found += [(name[1], i, check)] if check else []
    return found


def _mark(cell, grade_id: str, solution=False, grade=False, locked=True, points: float | None = None) -> None:
    cell.metadata["nbgrader"] = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
                                 "solution": solution, **({} if points is None else {"points": points})}


def make_source_notebook(master, seed: int):
    """nbgrader's source version of a notebook (solution cells marked, check cells locked and followed by a
    hidden test cell) and [(exercise name, points), ...]."""
    notebook, exercises = copy.deepcopy(master), find_exercises(master)
    for name in set(name for name, _, _ in exercises) - set(EXERCISES):
        raise GradingError(f"the exercise {name} has no hidden tests: add them to course_instructor/hidden_tests.py")
    for name, solution, check in reversed(exercises):
        worth = float(DEFAULT_POINTS[name])
        _mark(notebook.cells[solution], f"solution_{name}", solution=True, locked=False)
        _mark(notebook.cells[check], f"check_{name}")
        test = nbformat.v4.new_code_cell(
            f"# Graded: {name} is also run on cases you have not seen (hidden tests, {worth:g} points). "
            f"Leave this cell as it is.\n{HIDDEN_BEGIN}\nfrom course_instructor.hidden_tests import grade\n"
            f"grade({name!r}, globals().get({name!r}), points={worth!r}, seed={seed})\n{HIDDEN_END}")
        test.id = TEST_CELL_PREFIX + name
        _mark(test, f"hidden_tests_{name}", grade=True, points=worth)
        notebook.cells.insert(check + 1, test)
    nbformat.validate(notebook)
    return notebook, [(name, float(DEFAULT_POINTS[name])) for name, _, _ in exercises]


def run_nbgrader(args: list[str], course: Path, limit: float | None = None) -> tuple[int | None, str]:
    """Run one nbgrader command in the course directory in quick mode; (exit status, or None when killed
    with every process it started after `limit` seconds; its output)."""
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
        for child in [*psutil.Process(process.pid).children(recursive=True), process]:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        return None, process.communicate()[0]


def release(course: Path = DEFAULT_COURSE, assignment: str = DEFAULT_ASSIGNMENT,
            seed: int | None = None) -> dict[str, list[tuple[str, float]]]:
    """Write nbgrader's source version of every notebook with an exercise, generate the student release and
    zip it; {notebook: [(exercise, points), ...]}. `seed` (None: the course's, else a new one) draws the cases."""
    course = Path(course).resolve()
    chosen = [p for p in course_notebooks(ROOT / "notebooks") if SOLUTION_BEGIN in p.read_text(encoding="utf-8")]
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(CONFIG.format(timeout=DEFAULT_TIMEOUT), encoding="utf-8")
    kept = course / "hidden_seed.txt"
    seed = seed if seed is not None else int(kept.read_text()) if kept.exists() else secrets.randbelow(10**9)
    kept.write_text(f"{seed}\n")
    source_dir, release_dir = course / "source" / assignment, course / "release" / assignment
    for old in (source_dir, release_dir):
        shutil.rmtree(old, ignore_errors=True)
    source_dir.mkdir(parents=True)
    exercises = {}
    for path in chosen:
        source, exercises[path.stem] = make_source_notebook(nbformat.read(path, as_version=4), seed)
        nbformat.write(source, source_dir / path.name)
    status, output = run_nbgrader(["generate_assignment", assignment, "--force"], course)
    if status != 0 or not all((release_dir / path.name).exists() for path in chosen):
        raise GradingError(f"nbgrader generate_assignment failed:\n{output[-4000:]}")
    with zipfile.ZipFile(release_dir.parent / f"{assignment}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for path in chosen:
            archive.write(release_dir / path.name, f"{assignment}/{path.name}")
    return exercises


def student_id(folder_name: str) -> str:
    """nbgrader's id for a student folder: letters, digits and _ . @ - (anything else becomes _)."""
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", folder_name.strip()).strip("._") or "student"


def match_files(folder: Path, stems: list[str]) -> dict[str, Path | None]:
    """Each notebook's file in a student's folder (at any depth): the exact name, else a name containing it
    (as an LMS renames files: "03_loss_and_cost (1).ipynb"); the newest of several; None when missing."""
    files = [p for p in folder.rglob("*.ipynb") if p.is_file() and not any(
        part == "__MACOSX" or part.startswith(".") for part in p.relative_to(folder).parts)]
    return {stem: max([p for p in files if p.stem == stem] or [p for p in files if stem in p.stem],
                      key=lambda p: (p.stat().st_mtime, str(p)), default=None) for stem in stems}


def _grade_id(cell) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or ""


def read_graded(path: Path, timeout: int) -> tuple[dict[str, dict], list[str]]:
    """({exercise: report JSON or {"error": why}}, notes on the other failed cells) of an autograded notebook."""
    reports, notes = {}, []
    for number, cell in enumerate(nbformat.read(path, as_version=4).cells, start=1):
        outputs = cell.get("outputs", [])
        error = next((o for o in outputs if o.get("output_type") == "error"), None)
        why = error and (f"did not finish within {timeout} s" if error.get("ename") == TIMEOUT_ERROR
                         else f"raised {error.get('ename')}: {str(error.get('evalue', ''))[:160]}")
        if _grade_id(cell).startswith("hidden_tests_"):
            name = _grade_id(cell)[len("hidden_tests_"):]
            data = [o["data"][RESULT_MIME] for o in outputs if RESULT_MIME in o.get("data", {})]
            reports[name] = data[-1] if data else {"error": f"the hidden tests of {name} {why or 'gave no result'}"}
        elif why:
            notes.append(f"cell {number} ({cell.source.strip().splitlines()[0][:60]!r}) {why}")
    return reports, notes


def _grade_notebook(course: Path, assignment: str, sid: str, stem: str, path: Path | None, released,
                    timeout: int) -> dict:
    """Autograde one hand-in: {"notes": [...], "reports": {exercise: report}} (no reports: 0 points)."""
    if path is None:
        return {"notes": ["not handed in"], "reports": {}}
    notes = [] if path.name == f"{stem}.ipynb" else [f"graded the file {path.name}"]
    try:
        notebook = nbformat.reads(path.read_bytes().decode("utf-8-sig"), as_version=4)
        nbformat.validate(notebook)
    except Exception as error:  # noqa: BLE001 - nbformat raises many kinds of errors
        why = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
        return {"notes": notes + [f"{path.name} cannot be read ({why}): 0 points, ask for it again"], "reports": {}}
    if [_grade_id(c) for c in notebook.cells if _grade_id(c)] != [_grade_id(c) for c in released.cells if _grade_id(c)]:
        return {"notes": notes + [f"graded cells were deleted, moved or duplicated: {BY_HAND}"], "reports": {}}
    (course / "submitted" / sid / assignment).mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, course / "submitted" / sid / assignment / f"{stem}.ipynb")
    limit = 3 * timeout + 120
    status, output = run_nbgrader(["autograde", assignment, "--student", sid, "--notebook", stem, "--force",
                                   f"--Execute.timeout={int(timeout)}"], course, limit=limit)
    graded = course / "autograded" / sid / assignment / f"{stem}.ipynb"
    if not graded.exists():  # nbgrader failed: a dead kernel, or over `limit` seconds in all
        dead = [line.split("]", 1)[-1].strip() for line in output.splitlines() if "Kernel died" in line]
        why = f"stopped after {limit:g} s" if status is None else (dead or [f"exit status {status}"])[0]
        return {"notes": notes + [f"the notebook could not be graded ({why[:200]}): {BY_HAND}"], "reports": {}}
    reports, failed = read_graded(graded, timeout)
    return {"notes": notes + failed, "reports": reports}


def _grade_student(course: Path, assignment: str, sid: str, folder: Path, released: dict, timeout: int) -> dict:
    """{notebook: result} of one student, graded from scratch; a notebook without reports scores 0."""
    for stage in ("submitted", "autograded", "feedback"):
        shutil.rmtree(course / stage / sid / assignment, ignore_errors=True)
    results = {}
    for stem, path in match_files(folder, list(released)).items():
        try:
            results[stem] = _grade_notebook(course, assignment, sid, stem, path, released[stem], timeout)
        except Exception as error:  # noqa: BLE001 - one student's hand-in must not stop the class
            results[stem] = {"notes": [f"the grader failed ({type(error).__name__}: {error}): {BY_HAND}"],
                             "reports": {}}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notes inside nbgrader's add_submission
        gradebook.update_or_create_student(sid)
        for notebook in gradebook.update_or_create_submission(assignment, sid).notebooks:
            for grade in notebook.grades if not results[notebook.name]["reports"] else []:
                grade.auto_score, grade.needs_manual_grade = 0, False
        gradebook.db.commit()
    return results


def grade(submissions: Path, course: Path = DEFAULT_COURSE, assignment: str = DEFAULT_ASSIGNMENT,
          timeout: int = DEFAULT_TIMEOUT) -> Path:
    """Grade every student folder in `submissions` (one sub-folder per student; `timeout`: seconds per cell),
    then let nbgrader write the feedback; returns the path of grades.csv."""
    course, submissions = Path(course).resolve(), Path(submissions).resolve()
    folders = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))) \
        if submissions.is_dir() else []
    if not folders:
        raise GradingError(f"no student folders in {submissions}: put each student's notebooks in a folder named "
                           "after the student")
    released = {path.stem: nbformat.read(path, as_version=4)
                for path in sorted((course / "release" / assignment).glob("*.ipynb"))}
    if not released or not (course / "gradebook.db").exists():
        raise GradingError(f"no release of {assignment!r} in {course}: run `make release` first")
    results = {}
    for number, folder in enumerate(folders, start=1):
        sid = student_id(folder.name)
        while sid in results:
            sid += "-2"
        results[sid] = _grade_student(course, assignment, sid, folder, released, timeout)
        print(f"[{number}/{len(folders)}] {folder.name} graded as {sid}", flush=True)
    status, output = run_nbgrader(["generate_feedback", assignment, "--force"], course, limit=1800)
    if status != 0:
        print(f"warning: nbgrader generate_feedback failed:\n{output[-1500:]}")
    return write_grades_csv(course, assignment, results)


def _note(result: dict, name: str) -> str:
    """The CSV note on one exercise: what its hidden cases say, then the notes on its notebook."""
    report, notes = result["reports"].get(name, {}), result["notes"]
    failed = [case for case in report.get("cases", []) if not case["passed"]]
    mistakes = ", ".join(sorted({case["mistake"] for case in failed} - {None}))
    summary = report.get("error") or (f"{len(failed)} of {len(report['cases'])} hidden cases failed"
                                      + (f" ({mistakes})" if mistakes else "") if failed else "all hidden cases passed")
    return "; ".join([summary, *notes] if report else notes)


def write_grades_csv(course: Path, assignment: str, results: dict[str, dict]) -> Path:
    """grades.csv (COLUMNS), one row per student graded now and exercise, with the gradebook's scores."""
    rows = []
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for submission in gradebook.assignment_submissions(assignment):
            sid, total, max_total = submission.student.id, round(submission.score, 2), round(submission.max_score, 2)
            for notebook in submission.notebooks if sid in results else []:
                for cell in (g for g in notebook.grades if g.name.startswith("hidden_tests_")):
                    name = cell.name[len("hidden_tests_"):]
                    rows.append([assignment, sid, notebook.name, name, round(cell.score, 2), round(cell.max_score, 2),
                                 total, max_total, _note(results[sid][notebook.name], name)])
    rows.sort(key=lambda row: (row[1], row[2], list(EXERCISES).index(row[3])))
    with (course / "grades.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([COLUMNS, *rows])
    return course / "grades.csv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_instructor.grading", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    release_, grade_ = commands.add_parser("release"), commands.add_parser("grade")
    for sub in (release_, grade_):
        sub.add_argument("--course", type=Path, default=DEFAULT_COURSE, help="course directory (default classroom/)")
        sub.add_argument("--assignment", default=DEFAULT_ASSIGNMENT, help=f"default {DEFAULT_ASSIGNMENT}")
    release_.add_argument("--seed", type=int, default=None, help="seed of the hidden cases (default: the course's)")
    grade_.add_argument("submissions", type=Path, help="folder with one sub-folder per student")
    grade_.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, help="seconds per cell (default 300)")
    args = parser.parse_args(argv)
    try:
        if args.command == "release":
            for stem, items in release(args.course, args.assignment, args.seed).items():
                print(f"  {stem}: " + ", ".join(f"{name} ({points:g})" for name, points in items))
            print(f"Hand out {args.course / 'release' / args.assignment} (or the .zip beside it)")
        else:
            path = grade(args.submissions, args.course, args.assignment, args.timeout)
            print(f"Grades: {path}\nFeedback: {path.parent / 'feedback'}/<student>/{args.assignment}/")
    except GradingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
