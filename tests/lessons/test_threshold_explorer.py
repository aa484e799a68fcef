"""The threshold explorer of notebook 07, driven without a browser."""
import pytest
import torch

from course_utils.lessons.explorers import THRESHOLD_MAX, ThresholdExplorer
from course_utils.evaluation.recognition import threshold_summary

SAME = torch.tensor([0.1, 0.5, 0.9])
DIFFERENT = torch.tensor([0.6, 1.5, 2.0, 3.0])


def test_label_shows_the_errors_and_follows_the_slider():
    explorer = ThresholdExplorer(SAME, DIFFERENT, threshold=0.8)
    (slider,) = explorer.sliders
    assert slider.description == "threshold"
    assert slider.max == THRESHOLD_MAX == 4.0
    assert explorer.label.value == "threshold 0.80: 1 false accepts (25.0 %), 1 false rejects (33.3 %)"
    before = bytes(explorer.picture.value)
    slider.value = 1.5
    # At exactly the threshold a pair is accepted: the different pair at 1.5 is a false accept.
    assert explorer.label.value == threshold_summary(SAME, DIFFERENT, 1.5).text
    assert explorer.label.value == "threshold 1.50: 2 false accepts (50.0 %), 0 false rejects (0.0 %)"
    assert bytes(explorer.picture.value) != before and bytes(explorer.picture.value).startswith(b"\x89PNG")


@pytest.mark.parametrize("same,different,threshold,error", [
    (SAME, DIFFERENT, 4.5, ValueError),
    (SAME, DIFFERENT, -0.1, ValueError),
    (SAME.tolist(), DIFFERENT, 0.5, TypeError),
    (torch.tensor([]), DIFFERENT, 0.5, ValueError),
])
def test_bad_starts_are_refused(same, different, threshold, error):
    with pytest.raises(error):
        ThresholdExplorer(same, different, threshold)
