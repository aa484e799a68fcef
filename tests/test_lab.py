"""`make lab` starts for a learner: JupyterLab on the notebooks, without nbgrader's instructor tools.

The server test runs the command `make lab` runs (read from `make -n lab`) on 127.0.0.1 with
a free port, a token and no browser, asks it over HTTP what it serves, and stops it.
"""
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from course_utils import lab

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 120
STOP_SECONDS = 30


def make_lab_arguments() -> list[str]:
    """What `make lab` runs after the Python of the environment, e.g. ['-m', 'course_utils.lab', 'notebooks/']."""
    dry_run = subprocess.run(
        ["make", "--dry-run", "--silent", "--no-print-directory", "lab"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    _python, *arguments = shlex.split(dry_run.stdout.strip().splitlines()[-1])
    return arguments


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    """(status, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def page_config(html: bytes) -> dict:
    found = re.search(rb'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
    assert found, "the page has no jupyter-config-data"
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def learner_lab(tmp_path_factory):
    """The server `make lab` starts, plus flags for a test; yields (base URL, token, log path, folder).

    On teardown it checks that SIGTERM stopped JupyterLab cleanly and left no temporary files.
    """
    folder = tmp_path_factory.mktemp("lab")
    port, token = free_port(), secrets.token_hex(16)
    command = [
        sys.executable, *make_lab_arguments(), "--no-browser", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.token={token}",
    ]  # fmt: skip
    # Runtime files (cookie secret, server info) and the launcher's temporary config stay in folder.
    (folder / "runtime").mkdir()
    (folder / "tmp").mkdir()
    environment = {**os.environ, "JUPYTER_RUNTIME_DIR": str(folder / "runtime"), "TMPDIR": str(folder / "tmp")}
    log_path = folder / "lab.log"
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
        try:
            deadline = time.monotonic() + START_SECONDS
            while True:
                try:
                    if get(f"{base}/api/status?token={token}")[0] == 200:
                        break
                except OSError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"`make lab`'s JupyterLab did not answer; its log:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield base, token, log_path, folder
        finally:
            server.terminate()  # the launcher stops JupyterLab and removes its config folder
            try:
                server.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
                pytest.fail(f"`make lab` did not stop within {STOP_SECONDS} s of SIGTERM")
    # Stopped cleanly: JupyterLab removed its server file, the launcher its config folder.
    assert not list((folder / "runtime").glob("jpserver-*.json")), "JupyterLab did not shut down cleanly"
    assert not list((folder / "tmp").iterdir()), "the launcher left its config folder behind"


def test_make_lab_runs_the_course_launcher_on_the_notebooks():
    assert make_lab_arguments() == ["-m", "course_utils.lab", "notebooks/"]


def test_lab_serves_every_notebook(learner_lab):
    base, token, _, _ = learner_lab
    status, body = get(f"{base}/api/contents/?token={token}")
    assert status == 200
    served = {item["name"] for item in json.loads(body)["content"]}
    notebooks = {path.name for path in (ROOT / "notebooks").glob("*.ipynb")}
    assert notebooks and notebooks <= served
    assert get(f"{base}/lab/tree/01_distances.ipynb?token={token}")[0] == 200


def test_lab_has_no_nbgrader_and_no_news(learner_lab):
    base, token, log_path, _ = learner_lab
    assert get(f"{base}/formgrader?token={token}")[0] == 404  # nbgrader's server extension is off
    status, html = get(f"{base}/lab?token={token}")
    assert status == 200
    config = page_config(html)
    # Every nbgrader plugin id starts with "@jupyter/nbgrader:"; the announcements plugin asks
    # "Would you like to get notified about official Jupyter news?".
    assert {"@jupyter/nbgrader", "@jupyterlab/apputils-extension:announcements"} <= set(config["disabledExtensions"])
    assert config["news"] == {"disabled": True}
    log = log_path.read_text()
    assert "nbgrader" not in log.lower(), log  # no extension loaded, no "No nbgrader_config.py file found"
    assert (lab.ROOT_NOTE in log) == (os.geteuid() == 0)


def test_lab_reads_its_settings_from_a_temporary_folder(learner_lab):
    *_, folder = learner_lab
    (config,) = (folder / "tmp").iterdir()
    assert config.name.startswith("course-lab-config-")
    assert json.loads((config / "labconfig" / "page_config.json").read_text()) == lab.PAGE_CONFIG
    assert json.loads((config / "jupyter_server_config.json").read_text()) == lab.SERVER_CONFIG


@pytest.mark.parametrize("as_root", [True, False])
def test_allow_root_only_as_root(as_root):
    command = lab.lab_command(["notebooks/"], as_root=as_root)
    assert command[:4] == [sys.executable, "-m", "jupyterlab", "notebooks/"]
    assert ("--allow-root" in command) == as_root


def test_lab_command_refuses_a_string():
    with pytest.raises(TypeError, match="list of strings"):
        lab.lab_command("notebooks/", as_root=False)
