"""Fixtures shared by the test folders, which mirror the package: core/, data/, training/,
evaluation/, lessons/, checks/ and instructor/ (course_instructor).

pytest puts this folder on ``sys.path``, so tests import the helpers ``batches`` (labelled
batches with ties, duplicates and no triplets) and ``lab_browser`` (JupyterLab in Chromium)."""
from __future__ import annotations

import warnings

import pytest

from course_utils.core.losses import DegenerateBatchWarning
from course_utils.lessons.toy_training import make_toy_points, train_toy_points


@pytest.fixture
def quiet_degenerate_batches():
    """Batches without a valid triplet are part of the cases; their warning is tested on its own."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateBatchWarning)
        yield


@pytest.fixture(scope="session")
def toy_history():
    """The descent on notebook 03's toy points, as the plots and the step explorer show it."""
    points, labels = make_toy_points(separation=0.1, spread=0.15, seed=0)
    return train_toy_points(points, labels, alpha=0.2, learning_rate=0.0005)
