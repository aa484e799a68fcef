"""Tests of course_utils.strategies on a tiny face set (seconds on one core)."""
import pytest
import torch

from course_utils import reference
from course_utils.data import make_synthetic_faces, split_by_identity
from course_utils.losses import batch_all_triplet_loss
from course_utils.strategies import (
    STRATEGIES,
    ComparisonSettings,
    StrategyLoss,
    compare_strategies,
    masked_batch_all_loss,
    plot_comparison,
    plot_timings,
    summarise,
    time_batch_all,
    train_one_strategy,
)

TINY = ComparisonSettings(steps=4, eval_every=2, p=4, k=3, embedding_dim=8, width=4, probe_triplets=50)


@pytest.fixture(scope="module")
def faces():
    images, labels = make_synthetic_faces(n_identities=30, images_per_identity=4, image_size=16, seed=0)
    train_idx, test_idx = split_by_identity(labels, test_fraction=0.3, seed=0)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


@pytest.fixture(scope="module")
def comparison(faces):
    return compare_strategies(*faces, settings=TINY, seeds=(0, 1))


def test_every_run_is_recorded_at_every_measured_step(comparison):
    records, models = comparison
    assert set(models) == {(s, seed) for s in STRATEGIES for seed in (0, 1)}
    assert len(records) == len(STRATEGIES) * 2 * 3
    for record in records:
        assert 0 <= record["test_precision_at_1"] <= 1 and 0 <= record["random_zero_loss_fraction"] <= 1
        if record["step"] == 0:
            assert record["loss"] is None
        else:
            assert record["loss"] >= 0 and 0 <= record["active_fraction"] <= 1


def test_same_seed_means_same_start_and_runs_repeat_exactly(comparison, faces):
    records, _ = comparison
    starts = {(r["seed"], r["test_precision_at_1"], r["random_zero_loss_fraction"]) for r in records if r["step"] == 0}
    assert len(starts) == 2  # one starting network per seed, shared by all four strategies
    again, _ = train_one_strategy("semi-hard", 1, *faces, TINY)
    assert again == [r for r in records if r["strategy"] == "semi-hard" and r["seed"] == 1]


def test_summarise_gives_mean_and_range_over_seeds(comparison):
    records, _ = comparison
    summary = summarise(records, "test_precision_at_1", step=4)
    values = [r["test_precision_at_1"] for r in records if r["strategy"] == "random" and r["step"] == 4]
    assert summary["random"] == pytest.approx((sum(values) / 2, min(values), max(values)))
    with pytest.raises(ValueError, match="no record"):
        summarise(records, "loss", step=0)


def test_plots_have_labelled_panels(comparison):
    records, _ = comparison
    figure = plot_comparison(records, keys=("loss", "random_mean_d_an"))
    assert len(figure.axes) == 2 and all(ax.get_xlabel() == "gradient step" for ax in figure.axes)
    with pytest.raises(ValueError, match="cannot plot"):
        plot_comparison(records, keys=("accuracy",))


def test_random_strategy_reports_its_active_triplets():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(12, 5, generator=generator), dim=1)
    labels = torch.arange(4).repeat_interleave(3)
    loss_fn = StrategyLoss("random", alpha=0.2, generator=torch.Generator().manual_seed(1))
    loss = loss_fn(embeddings, labels)
    assert loss_fn.last_stats.num_triplets == 12 and 0 <= loss_fn.last_stats.num_active <= 12
    assert loss >= 0
    for strategy in STRATEGIES[1:]:
        mined = StrategyLoss(strategy, alpha=0.2)
        mined(embeddings, labels)
        assert mined.last_stats.num_triplets > 0


def test_masked_batch_all_matches_the_reference_and_the_course_loss():
    generator = torch.Generator().manual_seed(2)
    embeddings = torch.randn(10, 3, generator=generator)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 0])
    slow = reference.batch_all_triplet_loss(embeddings.double(), labels, alpha=0.5)[0]
    assert float(masked_batch_all_loss(embeddings, labels, 0.5)) == pytest.approx(float(slow), rel=1e-5)
    assert float(batch_all_triplet_loss(embeddings, labels, 0.5)) == pytest.approx(float(slow), rel=1e-5)


def test_timing_rows_count_triplets_and_skip_the_slow_loop_above_the_limit():
    rows = time_batch_all(batch_sizes=(8, 12), k=4, naive_up_to=8, repeats=1)
    assert [r["triplets"] for r in rows] == [8 * 3 * 4, 12 * 3 * 8]
    assert rows[0]["naive_seconds"] is not None and rows[1]["naive_seconds"] is None
    assert all(r["max_difference"] < 1e-5 for r in rows)
    assert plot_timings(rows).axes[0].get_xlabel().startswith("batch size")
    with pytest.raises(ValueError, match="multiple of k"):
        time_batch_all(batch_sizes=(10,), k=4)


@pytest.mark.parametrize("changes", [{"steps": 5, "eval_every": 2}, {"p": 1}, {"lr": 0.0}, {"alpha": -1.0}])
def test_bad_settings_are_refused(changes):
    values = {"steps": 4, "eval_every": 2, **changes}
    with pytest.raises(ValueError):
        ComparisonSettings(**values)


def test_unknown_strategy_and_empty_seeds_are_refused(faces):
    with pytest.raises(ValueError, match="unknown strategy"):
        StrategyLoss("hardest", alpha=0.2)
    with pytest.raises(ValueError, match="at least one seed"):
        compare_strategies(*faces, settings=TINY, seeds=())
