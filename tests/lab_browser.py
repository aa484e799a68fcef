"""A real JupyterLab on 127.0.0.1 driven by Debian's Chromium through Playwright.

Used by tests/test_browser.py. The server runs in a temporary copy of the notebooks with a
random free port and token; Chromium is Debian's binary (never one downloaded by a tool).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = ROOT / "build" / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyter_lab(notebooks: list[str], timeout: float = 90, append: dict[str, str] | None = None):
    """Start JupyterLab in a temporary copy of the given notebooks; yield its base URL and token.

    append: notebook name -> source of a code cell added at the end of that copy, e.g. one
    that prints what the tested compute function gives on this machine, to compare with a widget.
    """
    workdir = Path(tempfile.mkdtemp(prefix="course-lab-"))
    for name in notebooks:
        shutil.copy2(ROOT / "notebooks" / name, workdir / name)
    for name, source in (append or {}).items():
        notebook = nbformat.read(workdir / name, as_version=4)
        notebook.cells.append(nbformat.v4.new_code_cell(source))
        nbformat.write(notebook, workdir / name)
    port, token = _free_port(), secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--ServerApp.token={token}", f"--ServerApp.root_dir={workdir}",
        "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--ServerApp.open_browser=False", "--allow-root",
    ]
    log = open(workdir / ".server.log", "w")
    # JupyterLab 4 renders only the cells in view; the test needs every output in the page.
    settings = workdir / ".lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    # No "get notified about Jupyter news?" pop-up over the screenshot (and no fetch attempt).
    notification = workdir / ".lab-settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    # Runtime files (connection files, cookie secret) stay in the temporary folder too.
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(workdir / ".runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(workdir / ".lab-settings"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    server = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as response:
                    json.load(response)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start; its log:\n{(workdir / '.server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def chromium_page():
    """A Playwright page in headless Debian Chromium."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(
            "Chromium is not installed, so the browser test cannot run. `make test` installs "
            "Debian's package (apt-get install chromium); install it by hand if that failed."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            try:
                yield page
            except Exception:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
                raise
        finally:
            browser.close()


def open_and_run_all(page, base: str, token: str, notebook: str, timeout_ms: int = 150_000) -> None:
    """Open a notebook in JupyterLab, run all cells and wait until every code cell has run."""
    page.goto(f"{base}/lab/tree/{notebook}?reset&token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout_ms)
    page.locator(".jp-Notebook .jp-Cell").first.click()  # the command acts on the active notebook
    # The page can look idle before its kernel is connected; run-all would then do nothing.
    page.wait_for_function(
        """() => {
            const panel = window.jupyterapp.shell.currentWidget;
            const kernel = panel && panel.sessionContext && panel.sessionContext.session
                && panel.sessionContext.session.kernel;
            return kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
        }""",
        timeout=timeout_ms,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # Done when every code cell's prompt shows an execution number, e.g. "[14]:".
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""",
        timeout=timeout_ms,
    )


def widget_problems(page) -> list[str]:
    """What is wrong with the widgets on the page, in words (empty when all render)."""
    problems = []
    if page.locator(".jupyter-widgets-error-widget").count():
        problems.append("a widget shows an error box")
    text = page.locator(".jp-Notebook").inner_text()
    for sign, meaning in [
        ("Error displaying widget", "a widget failed to display"),
        ("Loading widget...", "a widget stayed 'Loading widget...'"),
        ("FloatSlider(", "a slider fell back to its text repr (widget extension missing?)"),
        ("IntSlider(", "a slider fell back to its text repr (widget extension missing?)"),
    ]:
        if sign in text:
            problems.append(meaning)
    if page.locator(".widget-slider").count() == 0:
        problems.append("no slider widget rendered")
    return problems


def slider(page, description: str):
    """The slider whose label reads exactly `description`."""
    return page.locator(".widget-slider", has=page.locator(".widget-label", has_text=description)).first


def printed_lines(page, prefix: str) -> list[str]:
    """The lines of the notebook's outputs that start with prefix, with the prefix removed."""
    text = page.locator(".jp-Notebook").inner_text()
    return [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]
