"""diagnose names each failure on crafted histories; the helpers of the failure lab behave."""
import math
import warnings

import pytest
import torch
from torch import nn

from course_utils.core import reference
from course_utils.checks.diagnosis import EXERCISE
from course_utils.lessons.diagnosis import FAILURES, diagnose, plot_broken_and_fixed, summary_line, train_fresh
from course_utils.core.losses import DegenerateBatchWarning, TripletLoss, batch_all_triplet_loss


def record(loss=0.1, active=0.5, d_ap=0.3, d_an=1.5, norm=1.0):
    return {"loss": loss, "active_fraction": active, "mean_d_ap": d_ap, "mean_d_an": d_an, "embedding_norm": norm}


HEALTHY = [record(0.18, 0.6, 0.3, 1.2), record(0.1, 0.4, 0.3, 1.6), record(0.05, 0.2, 0.2, 2.0)]
COLLAPSED = [record(0.15, 1.0, 0.2, 0.9), record(0.2, 1.0, 1e-4, 1e-3), record(0.2, 1.0, 0.0, 1e-4)]
NAN = [record(0.04), record(math.nan, 0.0, math.nan, math.nan, math.nan)]
EMPTY = [record(0.0, None, None, 1.0), record(0.1), record(0.0, None, None, 1.0)]
WIDE_MARGIN = [record(3.1, 1.0, 0.1, 2.2), record(2.9, 1.0, 0.1, 2.3)]


@pytest.mark.parametrize("history, alpha, metric, expected", [
    (HEALTHY, 0.2, "squared_euclidean", "healthy"),
    (COLLAPSED, 0.2, "squared_euclidean", "collapsed"),
    (NAN, 0.2, "squared_euclidean", "nan"),
    (EMPTY, 0.2, "squared_euclidean", "no_valid_triplets"),
    (WIDE_MARGIN, 5.0, "squared_euclidean", "margin_too_large"),
    (WIDE_MARGIN, 2.0, "cosine", "margin_too_large"),
    (WIDE_MARGIN, 2.0, "squared_euclidean", "healthy"),
])
def test_each_failure_is_named(history, alpha, metric, expected):
    result = diagnose(history, alpha, metric)
    assert result.name == expected
    assert result.explanation.startswith(expected.split("_")[0] if expected != "nan" else "NaN")


def test_wide_margin_is_no_failure_when_encodings_are_not_unit_vectors():
    assert diagnose([record(3.0, 1.0, 0.1, 20.0, norm=3.0)], 5.0).name == "healthy"


def test_infinite_distance_counts_as_nan():
    assert diagnose([record(0.1, d_an=math.inf)], 0.2).name == "nan"


def test_every_name_is_a_known_failure():
    histories = (HEALTHY, COLLAPSED, NAN, EMPTY)
    assert {diagnose(h, 0.2).name for h in histories} | {diagnose(WIDE_MARGIN, 5.0).name} == set(FAILURES)


@pytest.mark.parametrize("history, error", [
    ([], "non-empty list"), ("loss", "non-empty list"), ([1.0], "non-empty list"), ([{"loss": 0.1}], "lack"),
])
def test_bad_history_is_refused(history, error):
    with pytest.raises(ValueError, match=error):
        diagnose(history, 0.2)


def test_bad_alpha_and_metric_are_refused():
    with pytest.raises(ValueError, match="alpha"):
        diagnose(HEALTHY, -1.0)
    with pytest.raises(ValueError, match="metric"):
        diagnose(HEALTHY, 0.2, "manhattan")


@pytest.mark.parametrize("history, alpha", [
    (HEALTHY, 0.2), (COLLAPSED, 0.2), (NAN, 0.2), (EMPTY, 0.2), (WIDE_MARGIN, 5.0), (WIDE_MARGIN, 2.0),
    ([record(3.0, 1.0, 0.1, 20.0, norm=3.0)], 5.0), ([record(0.1, d_an=math.inf)], 0.2),
    *[case.args for case in EXERCISE.cases],
])
def test_diagnose_follows_the_five_rules_of_the_slow_reference(history, alpha):
    assert diagnose(history, alpha).name == reference.name_the_failure(history, alpha)


IMAGES = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(2))


def test_train_fresh_records_one_step_per_batch_and_no_triplet_as_none():
    labels = torch.tensor([0, 0, 1, 1, 2, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateBatchWarning)
        history = train_fresh(TripletLoss(alpha=0.2), IMAGES, labels, [torch.tensor([0, 1, 2, 3]),
                                                                       torch.tensor([0, 2, 4, 5])], lr=0.1)
    assert [r["step"] for r in history] == [1, 2]
    assert history[0]["active_fraction"] is not None and history[0]["mean_d_ap"] is not None
    assert history[1]["active_fraction"] is None and history[1]["mean_d_ap"] is None
    assert history[1]["loss"] == 0.0 and math.copysign(1, history[1]["loss"]) == 1


def test_train_fresh_needs_a_loss_that_reports_its_stats():
    with pytest.raises(TypeError, match="return_stats"):
        train_fresh(lambda e, l: e.sum(), IMAGES[:2], torch.tensor([0, 0]), [torch.tensor([0, 1])], lr=0.1)


def test_train_fresh_takes_a_function_with_return_stats_like_the_module():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    batches = [torch.arange(6), torch.tensor([0, 1, 2, 3])]
    as_function = train_fresh(batch_all_triplet_loss, IMAGES, labels, batches, lr=0.1)
    as_module = train_fresh(TripletLoss(alpha=0.2), IMAGES, labels, batches, lr=0.1)
    assert as_function == as_module
    assert as_function[0]["active_fraction"] is not None


def test_plot_has_one_panel_per_key_and_refuses_unknown_keys():
    figure = plot_broken_and_fixed([dict(record(), step=1)], [dict(record(active=None), step=1)],
                                   keys=("loss", "active_fraction"))
    assert len(figure.axes) == 2
    with pytest.raises(ValueError, match="cannot plot"):
        plot_broken_and_fixed(HEALTHY, HEALTHY, keys=("speed",))
    with pytest.raises(ValueError, match="non-empty list"):
        plot_broken_and_fixed([], HEALTHY)


def test_plot_marks_the_nan_steps_of_the_broken_run():
    figure = plot_broken_and_fixed(NAN, HEALTHY[:2], keys=("loss",), title="2. NaN")
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["fixed", "broken", "broken: NaN"]
    assert list(lines[2].get_xdata()) == [2]  # the NaN step, where the broken line itself shows nothing
    assert figure._suptitle.get_text() == "2. NaN"
    finite = plot_broken_and_fixed(HEALTHY, HEALTHY).axes[0].get_lines()
    assert "broken: NaN" not in [line.get_label() for line in finite]


def test_train_fresh_is_repeatable_and_can_return_the_network():
    images = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    labels = torch.arange(4).repeat_interleave(2)
    batches = [torch.arange(8)] * 2
    first = train_fresh(TripletLoss(alpha=0.2), images, labels, batches, lr=1e-3)
    again, network = train_fresh(TripletLoss(alpha=0.2), images, labels, batches, lr=1e-3, return_model=True)
    assert first == again and len(first) == 2
    _, untrained = train_fresh(TripletLoss(alpha=0.2), images, labels, batches[:0], lr=1e-3, return_model=True)
    assert isinstance(network, nn.Module) and not torch.equal(network(images), untrained(images))
    with pytest.raises(ValueError, match="lr"):
        train_fresh(TripletLoss(alpha=0.2), images, labels, batches, lr=0)


def test_summary_line_rounds_the_last_record_and_writes_none():
    line = summary_line("run", [record(), record(0.123456, None, None, 1.0)])
    assert line == ("run after 2 steps: loss 0.1235, active_fraction None, mean_d_ap None, "
                    "mean_d_an 1.0000, embedding_norm 1.0000")
