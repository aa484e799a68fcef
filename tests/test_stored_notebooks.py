"""The stored notebooks are as `make notebooks` writes them: run top to bottom in one kernel,
figures as PNG, no widget state and no execution timestamps, so re-running a notebook changes
only what its code prints or draws."""
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("[0-9]*.ipynb"))
RERUN = "re-run it with `make notebooks NB={}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_stored_notebook_ran_in_order_and_keeps_no_widget_state_or_timestamps(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert [cell["execution_count"] for cell in code] == list(range(1, len(code) + 1)), RERUN.format(path)
    assert "widgets" not in notebook["metadata"], f"{path.name} stores widget state; " + RERUN.format(path)
    timed = [i for i, cell in enumerate(notebook["cells"]) if "execution" in cell["metadata"]]
    assert not timed, f"{path.name} stores execution timestamps in cells {timed}; " + RERUN.format(path)
    images = {kind for cell in code for output in cell["outputs"] for kind in output.get("data", {})
              if kind.startswith("image/")}
    assert images <= {"image/png"}, f"{path.name} stores {images - {'image/png'}}: figures should be PNG"
