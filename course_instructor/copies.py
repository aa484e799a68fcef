"""Student copies of the notebooks (nbgrader's preprocessors, no gradebook: solutions become stubs raising
NotImplementedError, hidden tests and outputs go) and the course book (Jupyter Book 1.x, stored outputs).

    python -m course_instructor.copies student|book [--out build/student or build/book]
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
    config.NotebookExporter.preprocessors = [f"nbgrader.preprocessors.{name}"
                                             for name in ("ClearSolutions", "ClearOutput", "ClearHiddenTests")]
    # The notebooks carry no nbgrader metadata: the markers alone define the regions.
    config.ClearSolutions.enforce_metadata = False
    config.ClearHiddenTests.enforce_metadata = False
    body, _ = NotebookExporter(config=config).from_notebook_node(notebook)
    return nbformat.reads(body, as_version=4)


def make_student_version(src: Path = ROOT / "notebooks", out: Path = ROOT / "build" / "student") -> list[Path]:
    """Write a student copy of every course notebook in src to out; returns the written paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notebooks = course_notebooks(Path(src))
    for path in notebooks:
        nbformat.write(make_student_notebook(nbformat.read(path, as_version=4)), out / path.name)
    return [out / path.name for path in notebooks]


def build_book(src: Path = ROOT / "notebooks", out: Path = ROOT / "build" / "book") -> Path:
    """Build the HTML course (execution off) from a copy of book/ and the notebooks beside `out` (Sphinx reads
    only files below its source folder); returns the folder holding index.html."""
    out = Path(out)
    stage = out.parent / (out.name + "_source")
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(BOOK_SOURCES, stage)
    notebooks = course_notebooks(Path(src))
    for path in notebooks:
        shutil.copy2(path, stage / path.name)
    chapters = "".join(f"  - file: {path.stem}\n" for path in notebooks)
    (stage / "_toc.yml").write_text(f"format: jb-book\nroot: intro\nchapters:\n{chapters}")
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(stage), "--path-output", str(out),
               "--warningiserror", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return out / "_build" / "html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_instructor.copies", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["student", "book"], help="student: student copies; book: the HTML course")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default build/student or build/book)")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "build" / args.what
    if args.what == "student":
        print(f"Wrote {len(make_student_version(out=out))} student notebooks to {out}")
    else:
        print(f"Book built: open {build_book(out=out) / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
