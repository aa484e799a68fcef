"""Tests of course_utils.lessons.strategies on a tiny face set (seconds on one core)."""
import pytest
import torch

from course_utils.core import reference
from course_utils.data import make_synthetic_faces, split_by_identity
from course_utils.core.losses import batch_all_triplet_loss
from course_utils.evaluation.retrieval import embed
from course_utils.training.models import EmbeddingNet
from course_utils.lessons.strategies import (
    calibrate_batchnorm,
    make_probe,
    masked_batch_all_loss,
    measure,
    plot_comparison,
    plot_timings,
    summarise,
    time_batch_all,
)


@pytest.fixture(scope="module")
def faces():
    images, labels = make_synthetic_faces(n_identities=30, images_per_identity=4, image_size=16, seed=0)
    train_idx, test_idx = split_by_identity(labels, test_fraction=0.3, seed=0)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def _records():
    """Two strategies, two seeds, steps 0 and 10: made-up numbers with known means and ranges."""
    rows = []
    for strategy, base in (("random", 0.3), ("semi-hard", 0.6)):
        for seed in (0, 1):
            for step in (0, 10):
                value = base + 0.1 * seed + 0.01 * step
                rows.append({"strategy": strategy, "seed": seed, "step": step, "loss": None if step == 0 else value,
                             "test_precision_at_1": value, "test_map_at_r": value / 2,
                             "random_zero_loss_fraction": value, "random_mean_d_an": value})
    return rows


def test_probe_triplets_are_valid_and_among_the_first_persons(faces):
    train_images, train_labels, _, _ = faces
    probe = make_probe(train_images, train_labels, n_persons=5, n_triplets=40, seed=0)
    persons = train_labels.unique()[:5]
    rows = torch.isin(train_labels, persons).nonzero().flatten()
    probe_labels = train_labels[rows]
    assert torch.equal(probe.images, train_images[rows]) and len(probe.anchor) == 40
    assert bool((probe_labels[probe.anchor] == probe_labels[probe.positive]).all())
    assert bool((probe_labels[probe.anchor] != probe_labels[probe.negative]).all())
    assert bool((probe.anchor != probe.positive).all())


def test_calibrated_batchnorm_undoes_the_fresh_networks_squeeze(faces):
    """Untouched running statistics squeeze a fresh network's encodings together in eval mode."""
    train_images, _, _, _ = faces
    torch.manual_seed(0)
    model = EmbeddingNet(in_channels=3, embedding_dim=8, width=4)
    before = torch.pdist(embed(model, train_images)).mean()
    calibrate_batchnorm(model, train_images, batch_size=16)
    after = torch.pdist(embed(model, train_images)).mean()
    assert after > 10 * before
    assert model.training  # the mode is restored
    weights = [p.clone() for p in model.parameters()]
    calibrate_batchnorm(model, train_images)
    assert all(torch.equal(w, p) for w, p in zip(weights, model.parameters()))


def test_measure_reports_retrieval_and_the_probe(faces):
    train_images, train_labels, test_images, test_labels = faces
    torch.manual_seed(0)
    model = EmbeddingNet(in_channels=3, embedding_dim=8, width=4)
    probe = make_probe(train_images, train_labels, n_persons=5, n_triplets=40, seed=0)
    numbers = measure(model, test_images, test_labels, probe, alpha=0.2)
    assert set(numbers) == {"test_precision_at_1", "test_map_at_r", "random_zero_loss_fraction", "random_mean_d_an"}
    assert all(0 <= numbers[key] <= 1 for key in ("test_precision_at_1", "test_map_at_r", "random_zero_loss_fraction"))
    assert numbers["random_mean_d_an"] >= 0


def test_summarise_gives_mean_and_range_over_seeds():
    summary = summarise(_records(), "test_precision_at_1", step=10)
    assert summary["random"] == pytest.approx((0.45, 0.4, 0.5))
    assert summary["semi-hard"] == pytest.approx((0.75, 0.7, 0.8))
    with pytest.raises(ValueError, match="no record"):
        summarise(_records(), "loss", step=0)


def test_plots_have_labelled_panels():
    figure = plot_comparison(_records(), keys=("loss", "test_map_at_r", "random_mean_d_an"))
    assert len(figure.axes) == 3 and all(ax.get_xlabel() == "gradient step" for ax in figure.axes)
    with pytest.raises(ValueError, match="cannot plot"):
        plot_comparison(_records(), keys=("accuracy",))


def test_masked_batch_all_matches_the_reference_and_the_course_loss():
    generator = torch.Generator().manual_seed(2)
    embeddings = torch.randn(10, 3, generator=generator)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 0])
    slow = reference.batch_all_triplet_loss(embeddings.double(), labels, alpha=0.5)[0]
    assert float(masked_batch_all_loss(embeddings, labels, 0.5)) == pytest.approx(float(slow), rel=1e-5)
    assert float(batch_all_triplet_loss(embeddings, labels, 0.5)) == pytest.approx(float(slow), rel=1e-5)


def test_timing_rows_count_triplets_and_skip_the_slow_loop_above_the_limit():
    rows = time_batch_all(batch_sizes=(8, 12), naive_up_to=8, repeats=1)
    assert [r["triplets"] for r in rows] == [8 * 3 * 4, 12 * 3 * 8]
    assert rows[0]["naive_seconds"] is not None and rows[1]["naive_seconds"] is None
    assert all(r["max_difference"] < 1e-5 for r in rows)
    assert plot_timings(rows).axes[0].get_xlabel().startswith("batch size")
    with pytest.raises(ValueError, match="multiple of k"):
        time_batch_all(batch_sizes=(10,))


def test_timing_uses_the_masked_version_it_is_given():
    calls = []

    def masked(embeddings, labels, alpha):
        calls.append(len(labels))
        return masked_batch_all_loss(embeddings, labels, alpha)

    rows = time_batch_all(batch_sizes=(8,), masked=masked, naive_up_to=0, repeats=2)
    assert calls == [8, 8, 8] and rows[0]["max_difference"] < 1e-5
