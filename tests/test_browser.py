"""The sliders as learners meet them: a real JupyterLab in headless Chromium.

Starts JupyterLab on 127.0.0.1 in a temporary copy of the notebook, runs all cells, moves
a slider and checks that the displayed numbers are what the tested compute functions give
(course_utils.widgets for notebook 02, course_utils.triplet_kinds for notebook 05,
course_utils.recognition.threshold_summary for notebook 07).
A screenshot is saved under build/test-artifacts/. When Chromium is missing the test
fails with a message saying so: it is never skipped silently.
"""
import re

import nbformat
from playwright.sync_api import expect

from course_utils.widgets import margin_state
from lab_browser import ARTIFACTS, ROOT, chromium_page, jupyter_lab, open_and_run_all, slider, widget_problems

WAIT_MS = 60_000


def _press(page, slider_locator, key: str, times: int) -> None:
    """Move a slider by keyboard: focus its handle and press `key` (ArrowLeft/ArrowRight) `times` times."""
    slider_locator.locator(".noUi-handle").focus()
    for _ in range(times):
        page.keyboard.press(key)


def _run_and_find_explorer(page, base: str, token: str, notebook: str, slider_name: str, timeout_ms: int):
    """Run all cells of the notebook, then return (the slider named slider_name, its explorer box)."""
    open_and_run_all(page, base, token, notebook, timeout_ms=timeout_ms)
    found = slider(page, slider_name)
    found.scroll_into_view_if_needed()
    expect(found).to_be_visible(timeout=WAIT_MS)
    return found, page.locator(".widget-vbox", has=found).last


def _assert_redrawn_and_save(page, explorer, picture_before: str, filename: str) -> None:
    """The explorer's picture changed, no widget shows a problem; save a screenshot artefact."""
    expect(explorer.locator("img").first).not_to_have_attribute("src", picture_before, timeout=WAIT_MS)
    page.wait_for_timeout(500)  # let the new picture finish painting before the screenshot
    assert widget_problems(page) == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    explorer.screenshot(path=str(ARTIFACTS / filename))


def test_margin_explorer_alpha_slider_in_jupyterlab():
    with jupyter_lab(["02_margin.ipynb"]) as (base, token), chromium_page() as page:
        alpha, explorer = _run_and_find_explorer(page, base, token, "02_margin.ipynb", "alpha", 150_000)
        loss_label = explorer.locator(".widget-label", has_text=re.compile(r"^loss = "))
        verdict_label = explorer.locator(".widget-label", has_text=re.compile(r"^verdict: "))
        start = margin_state(0.2, 0.5, 0.51)
        expect(loss_label).to_have_text(start.loss_text, timeout=WAIT_MS)
        expect(verdict_label).to_have_text(start.verdict_text, timeout=WAIT_MS)

        # Drag the alpha handle to the right with the mouse, then read where it landed.
        picture_before = explorer.locator("img").first.get_attribute("src")
        handle = alpha.locator(".noUi-handle")
        box = handle.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2 + 60, box["y"] + box["height"] / 2, steps=10)
        page.mouse.up()
        expect(handle).not_to_have_attribute("aria-valuenow", "0.20", timeout=WAIT_MS)
        dragged = float(alpha.locator(".widget-readout").inner_text())
        assert dragged > 0.2
        moved = margin_state(dragged, 0.5, 0.51)
        expect(loss_label).to_have_text(moved.loss_text, timeout=WAIT_MS)
        expect(verdict_label).to_have_text(moved.verdict_text, timeout=WAIT_MS)
        _assert_redrawn_and_save(page, explorer, picture_before, "02_margin_explorer.png")

        # Then down with the keyboard to alpha = 0.01: the margin is met (d(A,N) > d(A,P)).
        _press(page, alpha, "ArrowLeft", round((dragged - 0.01) / 0.01))
        expect(alpha.locator(".widget-readout")).to_have_text("0.01", timeout=WAIT_MS)
        small = margin_state(0.01, 0.5, 0.51)
        expect(loss_label).to_have_text(small.loss_text, timeout=WAIT_MS)
        expect(verdict_label).to_have_text("verdict: margin met", timeout=WAIT_MS)

        assert widget_problems(page) == []


def _stored_counts(notebook: str, alpha: float) -> str:
    """The counts line for one alpha from notebook 05's output-checked table (verified by nbval)."""
    cells = nbformat.read(ROOT / "notebooks" / notebook, as_version=4).cells
    table = next(c for c in cells if c.cell_type == "code" and "for alpha in (" in c.source and "triplet_kind_counts" in c.source)
    lines = "".join(o.get("text", "") for o in table.outputs).splitlines()
    return next(line.split(": ", 1)[1] for line in lines if line.startswith(f"alpha = {alpha:.1f}:"))


def test_mining_explorer_alpha_slider_in_jupyterlab():
    notebook = "05_choosing_triplets.ipynb"
    with jupyter_lab([notebook]) as (base, token), chromium_page() as page:
        alpha, explorer = _run_and_find_explorer(page, base, token, notebook, "alpha", 240_000)
        counts = explorer.locator(".widget-label", has_text=re.compile(r"^easy: "))
        expect(counts).to_have_text(_stored_counts(notebook, 0.2), timeout=WAIT_MS)
        picture_before = explorer.locator("img").first.get_attribute("src")
        _press(page, alpha, "ArrowRight", 20)  # 0.20 -> 0.40 in steps of 0.01
        expect(alpha.locator(".widget-readout")).to_have_text("0.40", timeout=WAIT_MS)
        expect(counts).to_have_text(_stored_counts(notebook, 0.4), timeout=WAIT_MS)
        _assert_redrawn_and_save(page, explorer, picture_before, "05_mining_explorer.png")


def _stored_alpha_threshold_line(notebook: str) -> str:
    """Notebook 07's output-checked line 'as a threshold, alpha would give: threshold 0.20: ...'."""
    cells = nbformat.read(ROOT / "notebooks" / notebook, as_version=4).cells
    prefix = "as a threshold, alpha would give: "
    for cell in cells:
        for output in cell.get("outputs", []):
            for line in output.get("text", "").splitlines():
                if line.startswith(prefix):
                    return line[len(prefix):]
    raise AssertionError(f"{notebook} has no stored line starting {prefix!r}; re-run `make notebooks`.")


def test_threshold_explorer_slider_in_jupyterlab():
    notebook = "07_one_shot.ipynb"
    expected = _stored_alpha_threshold_line(notebook)  # verified by nbval against recognition.threshold_summary
    assert expected.startswith("threshold 0.20: ")
    with jupyter_lab([notebook]) as (base, token), chromium_page() as page:
        threshold, explorer = _run_and_find_explorer(page, base, token, notebook, "threshold", 300_000)
        errors = explorer.locator(".widget-label", has_text=re.compile(r"^threshold \d"))
        start = float(threshold.locator(".widget-readout").inner_text())
        expect(errors).to_have_text(re.compile(rf"^threshold {start:.2f}: \d+ false accepts"), timeout=WAIT_MS)
        picture_before = explorer.locator("img").first.get_attribute("src")
        _press(page, threshold, "ArrowLeft", round((start - 0.20) / 0.01))  # down to alpha = 0.20
        expect(threshold.locator(".widget-readout")).to_have_text("0.20", timeout=WAIT_MS)
        expect(errors).to_have_text(expected, timeout=WAIT_MS)
        _assert_redrawn_and_save(page, explorer, picture_before, "07_threshold_explorer.png")
