"""diagnose names each failure on crafted histories; the helpers of the failure lab behave."""
import math
import warnings

import pytest
import torch
from torch import nn

from course_utils.diagnosis import (
    FAILURES,
    NaiveEuclideanTripletLoss,
    diagnose,
    naive_euclidean,
    pk_batches,
    plot_broken_and_fixed,
    random_batches,
    record_steps,
    summary_line,
    train_fresh,
    unit_gradient_is_finite,
)
from course_utils.distances import euclidean
from course_utils.losses import DegenerateBatchWarning, TripletLoss


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
    ([], ValueError), ("loss", ValueError), ([1.0], TypeError), ([{"loss": 0.1}], ValueError),
])
def test_bad_history_is_refused(history, error):
    with pytest.raises(error):
        diagnose(history, 0.2)


def test_bad_alpha_and_metric_are_refused():
    with pytest.raises(ValueError, match="alpha"):
        diagnose(HEALTHY, -1.0)
    with pytest.raises(ValueError, match="metric"):
        diagnose(HEALTHY, 0.2, "manhattan")


def test_naive_euclidean_matches_the_safe_one_but_gives_nan_gradient_on_duplicates():
    a, b = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)).split([3, 2])
    pairs_a, pairs_b = a[:2], b
    torch.testing.assert_close(naive_euclidean(pairs_a, pairs_b), euclidean(pairs_a, pairs_b))
    duplicate = torch.tensor([[0.6, 0.8], [0.6, 0.8]])
    assert not unit_gradient_is_finite(naive_euclidean, duplicate)
    assert unit_gradient_is_finite(euclidean, duplicate)
    assert unit_gradient_is_finite(naive_euclidean, torch.tensor([[0.6, 0.8], [1.0, 0.0]]))


def test_naive_euclidean_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        naive_euclidean(torch.zeros(2, 3), torch.zeros(3, 3))


def test_naive_loss_equals_the_course_loss_without_duplicates():
    embeddings = torch.nn.functional.normalize(torch.randn(8, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    naive = NaiveEuclideanTripletLoss(alpha=0.5)
    course = TripletLoss(alpha=0.5, mining="all", metric="euclidean")
    torch.testing.assert_close(naive(embeddings, labels), course(embeddings, labels))
    assert naive.last_stats == course.last_stats


def _tiny_run(loss_fn, batches, images, labels):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    return record_steps(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn, images, labels, batches)


def test_record_steps_records_one_step_per_batch_and_no_triplet_as_none():
    images = torch.rand(6, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 0, 1, 1, 2, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateBatchWarning)
        history = _tiny_run(TripletLoss(alpha=0.2), [torch.tensor([0, 1, 2, 3]), torch.tensor([0, 2, 4, 5])],
                            images, labels)
    assert [r["step"] for r in history] == [1, 2]
    assert history[0]["active_fraction"] is not None and history[0]["mean_d_ap"] is not None
    assert history[1]["active_fraction"] is None and history[1]["mean_d_ap"] is None
    assert history[1]["loss"] == 0.0 and math.copysign(1, history[1]["loss"]) == 1


def test_record_steps_needs_a_loss_with_stats():
    with pytest.raises(TypeError, match="last_stats"):
        _tiny_run(lambda e, l: e.sum(), [torch.tensor([0, 1])], torch.rand(2, 1, 2, 2), torch.tensor([0, 0]))


def test_random_batches_are_repeatable_and_refuse_bad_sizes():
    first, again = random_batches(10, 4, 3, seed=5), random_batches(10, 4, 3, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert all(len(set(b.tolist())) == 4 and int(b.max()) < 10 for b in first)
    with pytest.raises(ValueError, match="exceed"):
        random_batches(3, 4, 1)
    with pytest.raises(ValueError, match="steps"):
        random_batches(10, 4, 0)


def test_plot_has_one_panel_per_key_and_refuses_unknown_keys():
    figure = plot_broken_and_fixed([dict(record(), step=1)], [dict(record(active=None), step=1)],
                                   keys=("loss", "active_fraction"))
    assert len(figure.axes) == 2
    with pytest.raises(ValueError, match="cannot plot"):
        plot_broken_and_fixed(HEALTHY, HEALTHY, keys=("speed",))


def test_pk_batches_continue_into_the_next_epoch():
    labels = torch.arange(4).repeat_interleave(4)
    batches = pk_batches(labels, p=2, k=2, steps=7, seed=1)
    assert len(batches) == 7
    assert all(torch.bincount(labels[b]).max() == 2 and len(labels[b].unique()) == 2 for b in batches)
    with pytest.raises(ValueError, match="steps"):
        pk_batches(labels, 2, 2, 0)


def test_train_fresh_is_repeatable():
    images = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    labels = torch.arange(4).repeat_interleave(2)
    batches = [torch.arange(8)] * 2
    first = train_fresh(TripletLoss(alpha=0.2), images, labels, batches, lr=1e-3)
    again = train_fresh(TripletLoss(alpha=0.2), images, labels, batches, lr=1e-3)
    assert first == again and len(first) == 2
    with pytest.raises(ValueError, match="lr"):
        train_fresh(TripletLoss(alpha=0.2), images, labels, batches, lr=0)


def test_summary_line_rounds_the_last_record_and_writes_none():
    line = summary_line("run", [record(), record(0.123456, None, None, 1.0)])
    assert line == ("run after 2 steps: loss 0.1235, active_fraction None, mean_d_ap None, "
                    "mean_d_an 1.0000, embedding_norm 1.0000")
