"""Instructor tools: student copies of the notebooks and the rendered course book.

Student copies use nbgrader's own preprocessors through nbconvert (no nbgrader database
or course directory needed): every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block
becomes a stub that raises NotImplementedError, hidden tests are removed and outputs
cleared. The book is built by Jupyter Book 1.x from the stored, already executed
notebooks, so nothing runs twice.

Command line (the Makefile's ``student`` and ``book`` targets call these):
    python -m course_instructor.copies student [--src notebooks] [--out build/student]
    python -m course_instructor.copies book [--src notebooks] [--out build/book]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
BOOK_SOURCES = ROOT / "book"
SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"


def course_notebooks(src: Path) -> list[Path]:
    """The numbered course notebooks in src, in course order."""
    notebooks = sorted(p for p in Path(src).glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no numbered notebooks (NN_name.ipynb) found in {src}")
    return notebooks


def make_student_notebook(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student copy of one notebook (the input is left unchanged)."""
    from nbconvert.exporters import NotebookExporter
    from traitlets.config import Config

    config = Config()
    config.NotebookExporter.preprocessors = [
        "nbgrader.preprocessors.ClearSolutions",
        "nbgrader.preprocessors.ClearOutput",
        "nbgrader.preprocessors.ClearHiddenTests",
    ]
    # Our notebooks carry no nbgrader cell metadata: the markers alone define the regions.
    config.ClearSolutions.enforce_metadata = False
    config.ClearHiddenTests.enforce_metadata = False
    body, _ = NotebookExporter(config=config).from_notebook_node(notebook)
    return nbformat.reads(body, as_version=4)


def make_student_version(src: Path = ROOT / "notebooks", out: Path = ROOT / "build" / "student") -> list[Path]:
    """Write a student copy of every course notebook in src to out; returns the written paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in course_notebooks(Path(src)):
        student = make_student_notebook(nbformat.read(path, as_version=4))
        target = out / path.name
        nbformat.write(student, target)
        written.append(target)
    return written


def _table_of_contents(notebooks: list[Path]) -> str:
    lines = ["format: jb-book", "root: intro", "chapters:"]
    lines += [f"  - file: {path.stem}" for path in notebooks]
    return "\n".join(lines) + "\n"


def build_book(src: Path = ROOT / "notebooks", out: Path = ROOT / "build" / "book") -> Path:
    """Build the HTML course with Jupyter Book 1.x; returns the folder holding index.html.

    The notebooks and the pages in book/ are copied to a staging folder next to the output
    (Sphinx reads only files below its source folder) with a table of contents listing the
    notebooks that exist. Execution is off: pages show the stored outputs.
    """
    out = Path(out)
    stage = out.parent / (out.name + "_source")
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(BOOK_SOURCES, stage)
    notebooks = course_notebooks(Path(src))
    for path in notebooks:
        shutil.copy2(path, stage / path.name)
    (stage / "_toc.yml").write_text(_table_of_contents(notebooks))
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(stage), "--path-output", str(out), "--warningiserror", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return out / "_build" / "html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_instructor.copies", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["student", "book"], help="student: student copies; book: the HTML course")
    parser.add_argument("--src", type=Path, default=ROOT / "notebooks", help="folder of the course notebooks")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default build/student or build/book)")
    args = parser.parse_args(argv)
    if args.what == "student":
        written = make_student_version(args.src, args.out or ROOT / "build" / "student")
        print(f"Wrote {len(written)} student notebooks to {written[0].parent}")
    else:
        html = build_book(args.src, args.out or ROOT / "build" / "book")
        print(f"Book built: open {html / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
