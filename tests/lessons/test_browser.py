"""The sliders as learners meet them: a real JupyterLab in headless Chromium.

Starts JupyterLab on 127.0.0.1 in a temporary copy of the notebook, runs all cells, moves
a slider and checks that the displayed numbers are what the tested compute functions give
(course_utils.lessons.widgets for notebooks 02 and 03, course_utils.lessons.triplet_kinds for notebook 05,
course_utils.evaluation.recognition.threshold_summary for notebook 07), computed on this machine: for
03, 05 and 07 a cell appended to the temporary copy prints them from the notebook's own
data in the same kernel, since trained numbers differ in their last digits between machines.
The pictures of 02 and 03 must be
shown at the size they were drawn, not stretched to the page width.
A screenshot is saved under build/test-artifacts/. When Chromium is missing the test
fails with a message saying so: it is never skipped silently.
"""
import re

from playwright.sync_api import expect

from course_utils.lessons.widgets import margin_state
from lab_browser import (ARTIFACTS, chromium_page, jupyter_lab, open_and_run_all, printed_lines, slider,
                         widget_problems)

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


def _assert_drawn_at_own_size(explorer) -> None:
    """The explorer's picture is shown at most as wide as it was drawn: not stretched to the page width."""
    shown, drawn = explorer.locator("img").first.evaluate("img => [img.clientWidth, img.naturalWidth]")
    assert 0 < shown <= drawn, f"the picture is shown {shown} px wide but was drawn {drawn} px wide"


def test_margin_explorer_alpha_slider_in_jupyterlab():
    with jupyter_lab(["02_margin.ipynb"]) as (base, token), chromium_page() as page:
        alpha, explorer = _run_and_find_explorer(page, base, token, "02_margin.ipynb", "alpha", 150_000)
        label = explorer.locator(".widget-label", has_text=re.compile(r"^loss = "))
        expect(label).to_have_text(margin_state(0.2, 0.5, 0.51).text, timeout=WAIT_MS)
        _assert_drawn_at_own_size(explorer)

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
        expect(label).to_have_text(margin_state(dragged, 0.5, 0.51).text, timeout=WAIT_MS)
        _assert_redrawn_and_save(page, explorer, picture_before, "02_margin_explorer.png")

        # Then down with the keyboard to alpha = 0.01: the margin is met (d(A,N) > d(A,P)).
        _press(page, alpha, "ArrowLeft", round((dragged - 0.01) / 0.01))
        expect(alpha.locator(".widget-readout")).to_have_text("0.01", timeout=WAIT_MS)
        expect(label).to_have_text(margin_state(0.01, 0.5, 0.51).text, timeout=WAIT_MS)
        expect(label).to_contain_text("verdict: margin met", timeout=WAIT_MS)

        assert widget_problems(page) == []


# Added at the end of notebook 05's copy: the counts that course_utils.lessons.triplet_kinds gives, on this
# machine, for the explorer's distances (d_ap, d_an of the trained batch) at the two slider positions.
EXPECTED_COUNTS = "expected counts at alpha "
COUNTS_CELL = f"""
for alpha in (0.2, 0.4):
    print(f"{EXPECTED_COUNTS}{{alpha:.2f}}: {{triplet_kind_counts(d_ap, d_an, alpha).text}}")
"""


def test_mining_explorer_alpha_slider_in_jupyterlab():
    notebook = "05_choosing_triplets.ipynb"
    with jupyter_lab([notebook], append={notebook: COUNTS_CELL}) as (base, token), chromium_page() as page:
        alpha, explorer = _run_and_find_explorer(page, base, token, notebook, "alpha", 600_000)
        expected = dict(line.split(": ", 1) for line in printed_lines(page, EXPECTED_COUNTS))
        assert set(expected) == {"0.20", "0.40"}, expected
        counts = explorer.locator(".widget-label", has_text=re.compile(r"^easy: "))
        expect(counts).to_have_text(expected["0.20"], timeout=WAIT_MS)
        picture_before = explorer.locator("img").first.get_attribute("src")
        _press(page, alpha, "ArrowRight", 20)  # 0.20 -> 0.40 in steps of 0.01
        expect(alpha.locator(".widget-readout")).to_have_text("0.40", timeout=WAIT_MS)
        expect(counts).to_have_text(expected["0.40"], timeout=WAIT_MS)
        _assert_redrawn_and_save(page, explorer, picture_before, "05_mining_explorer.png")


# Added at the end of notebook 07's copy: what recognition.threshold_summary gives, on this machine,
# for the explorer's distances (same, different) at alpha = 0.20.
EXPECTED_ERRORS = "expected errors: "
ERRORS_CELL = f"print({EXPECTED_ERRORS!r} + threshold_summary(same, different, 0.2).text)"


def test_threshold_explorer_slider_in_jupyterlab():
    notebook = "07_one_shot.ipynb"
    with jupyter_lab([notebook], append={notebook: ERRORS_CELL}) as (base, token), chromium_page() as page:
        threshold, explorer = _run_and_find_explorer(page, base, token, notebook, "threshold", 400_000)
        [expected] = printed_lines(page, EXPECTED_ERRORS)
        assert expected.startswith("threshold 0.20: ")
        errors = explorer.locator(".widget-label", has_text=re.compile(r"^threshold \d"))
        start = float(threshold.locator(".widget-readout").inner_text())
        expect(errors).to_have_text(re.compile(rf"^threshold {start:.2f}: \d+ false accepts"), timeout=WAIT_MS)
        picture_before = explorer.locator("img").first.get_attribute("src")
        _press(page, threshold, "ArrowLeft", round((start - 0.20) / 0.01))  # down to alpha = 0.20
        expect(threshold.locator(".widget-readout")).to_have_text("0.20", timeout=WAIT_MS)
        expect(errors).to_have_text(expected, timeout=WAIT_MS)
        _assert_redrawn_and_save(page, explorer, picture_before, "07_threshold_explorer.png")


# Added at the end of notebook 03's copy: what widgets.toy_step_summary gives, on this machine, for the
# explorer's history at its first and last step.
EXPECTED_STEP = "expected step: "
STEPS_CELL = f"""
print({EXPECTED_STEP!r} + toy_step_summary(history, 0))
print({EXPECTED_STEP!r} + toy_step_summary(history, history.steps))
"""


def test_toy_step_explorer_slider_in_jupyterlab():
    notebook = "03_loss_and_cost.ipynb"
    with jupyter_lab([notebook], append={notebook: STEPS_CELL}) as (base, token), chromium_page() as page:
        step, explorer = _run_and_find_explorer(page, base, token, notebook, "step", 150_000)
        first, last = printed_lines(page, EXPECTED_STEP)
        last_step = int(first.split(" of ")[1].split(":")[0])
        label = explorer.locator(".widget-label", has_text=re.compile(r"^step \d+ of "))
        expect(label).to_have_text(first, timeout=WAIT_MS)
        _assert_drawn_at_own_size(explorer)
        picture_before = explorer.locator("img").first.get_attribute("src")
        _press(page, step, "ArrowRight", last_step)
        expect(step.locator(".widget-readout")).to_have_text(str(last_step), timeout=WAIT_MS)
        expect(label).to_have_text(last, timeout=WAIT_MS)
        _assert_redrawn_and_save(page, explorer, picture_before, "03_toy_step_explorer.png")
        _assert_drawn_at_own_size(explorer)
