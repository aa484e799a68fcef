"""`import course_utils` stays light, and its public names still resolve."""
import json
import subprocess
import sys

import pytest

import course_utils

HEAVY = ("matplotlib", "tqdm", "ipywidgets", "IPython", "sklearn", "torchvision")
_SCRIPT = """
import json, sys
import torch
before = set(sys.modules)
import {modules}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _loaded_by(modules: str) -> list[str]:
    """The modules that importing `modules` adds to a Python that has already imported torch."""
    result = subprocess.run([sys.executable, "-c", _SCRIPT.format(modules=modules)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize("modules", [
    "course_utils",
    "course_utils.core.distances, course_utils.core.mining, course_utils.core.losses, course_utils.core.reference",
])
def test_the_package_and_its_core_load_no_plotting_progress_bars_widgets_or_distributed_code(modules):
    loaded = _loaded_by(modules)
    heavy = [name for name in loaded if name.split(".")[0] in HEAVY]
    assert heavy == [], f"importing {modules} loads {heavy}"
    ours = [name for name in loaded if name.startswith("course_utils.")]
    assert not {"course_utils.training.distributed", "course_utils.lessons.widgets", "course_utils.training.trainer"} & set(ours), ours


def test_every_public_name_resolves_from_the_module_that_defines_it():
    for name in course_utils.__all__:
        value = getattr(course_utils, name)
        assert value.__name__ == name and name in dir(course_utils)
        assert value.__module__ == f"course_utils.{course_utils._WHERE[name]}", name


def test_an_unknown_name_says_so():
    with pytest.raises(AttributeError, match="has no attribute 'TripletLos'"):
        course_utils.TripletLos  # noqa: B018
