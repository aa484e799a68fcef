"""What `make lab` starts: JupyterLab on the course's notebooks, set up for a learner.

    python -m course_utils.lab notebooks/ [more flags of jupyter lab]

nbgrader's server extensions and JupyterLab plugins (installed for instructors) are switched off, so
a learner sees the course, not grading tools; there is no news prompt and no update check (the course
runs offline); as root, --allow-root is added with a one-line note. The settings go into a temporary
folder first on JUPYTER_CONFIG_PATH, removed when JupyterLab stops.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

NBGRADER_SERVER_EXTENSIONS = (
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.validate_assignment",
    "nbgrader.server_extensions.assignment_list",
    "nbgrader.server_extensions.course_list",
)
# The package name disables every plugin whose id starts with "@jupyter/nbgrader:".
NBGRADER_LAB_EXTENSION = "@jupyter/nbgrader"

# A disabled extension is not even imported: harmless where nbgrader is not installed.
SERVER_CONFIG = {
    "ServerApp": {"jpserver_extensions": {name: False for name in NBGRADER_SERVER_EXTENSIONS}},
    "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"},
}
# The "get notified about official Jupyter news?" plugin; news_url and check_for_updates_class (above)
# keep the server itself from fetching news.
ANNOUNCEMENTS_PLUGIN = "@jupyterlab/apputils-extension:announcements"
# labconfig/page_config.json: JupyterLab has no command-line flag for disabled plugins.
PAGE_CONFIG = {"disabledExtensions": {NBGRADER_LAB_EXTENSION: True, ANNOUNCEMENTS_PLUGIN: True}}

ROOT_NOTE = "Running as root: adding --allow-root (JupyterLab does not start as root without it)."


def running_as_root() -> bool:
    """True for user id 0 (never on systems without user ids)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def lab_command(arguments: Sequence[str], as_root: bool) -> list[str]:
    """``jupyter lab`` of this Python with the given flags, plus --allow-root when as_root."""
    if isinstance(arguments, str) or not all(isinstance(argument, str) for argument in arguments):
        raise TypeError("arguments must be a list of strings, e.g. ['notebooks/', '--no-browser'].")
    return [sys.executable, "-m", "jupyterlab", *arguments, *(["--allow-root"] if as_root else [])]


def write_config(folder: Path) -> None:
    """Write the learner's Jupyter configuration (SERVER_CONFIG, PAGE_CONFIG) into folder."""
    (folder / "labconfig").mkdir(parents=True, exist_ok=True)
    (folder / "jupyter_server_config.json").write_text(json.dumps(SERVER_CONFIG, indent=2) + "\n")
    (folder / "labconfig" / "page_config.json").write_text(json.dumps(PAGE_CONFIG, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run JupyterLab until it stops; returns its exit status."""
    arguments = sys.argv[1:] if argv is None else argv
    as_root = running_as_root()
    if as_root:
        print(ROOT_NOTE, flush=True)
    with tempfile.TemporaryDirectory(prefix="course-lab-config-") as folder:
        write_config(Path(folder))
        config_path = [folder, *filter(None, [os.environ.get("JUPYTER_CONFIG_PATH")])]
        environment = {**os.environ, "JUPYTER_CONFIG_PATH": os.pathsep.join(config_path)}
        lab = subprocess.Popen(lab_command(arguments, as_root), env=environment)
        # Stopping this process stops JupyterLab, and the folder is removed after it.
        signal.signal(signal.SIGTERM, lambda signum, frame: lab.terminate())
        while True:
            try:
                return lab.wait()
            except KeyboardInterrupt:  # Ctrl-C reaches JupyterLab too, which asks whether to stop
                continue


if __name__ == "__main__":
    sys.exit(main())
