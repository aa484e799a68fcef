"""Tests of course_utils.lessons.strategies on a tiny face set (seconds on one core)."""
import pytest
import torch

from course_utils.data import make_random_triplets, make_synthetic_faces, split_by_identity
from course_utils.core.distances import squared_euclidean
from course_utils.evaluation.retrieval import embed
from course_utils.training.models import EmbeddingNet
from course_utils.lessons.strategies import measure, plot_comparison, summarise


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


def test_measure_reports_retrieval_and_the_probe(faces):
    train_images, train_labels, test_images, test_labels = faces
    torch.manual_seed(0)
    model = EmbeddingNet(in_channels=3, embedding_dim=8, width=4)
    probe = (train_images, *make_random_triplets(train_labels, 40, seed=0))
    numbers = measure(model, test_images, test_labels, probe, alpha=0.2)
    assert set(numbers) == {"test_precision_at_1", "test_map_at_r", "random_zero_loss_fraction", "random_mean_d_an"}
    assert all(0 <= numbers[key] <= 1 for key in ("test_precision_at_1", "test_map_at_r", "random_zero_loss_fraction"))
    encodings, (_, anchor, positive, negative) = embed(model, train_images), probe
    d_ap, d_an = squared_euclidean(encodings[anchor], encodings[positive]), squared_euclidean(encodings[anchor],
                                                                                               encodings[negative])
    assert numbers["random_mean_d_an"] == pytest.approx(float(d_an.mean()), rel=1e-5)
    assert numbers["random_zero_loss_fraction"] == pytest.approx(float((d_an >= d_ap + 0.2).double().mean()))


def test_summarise_gives_mean_and_range_over_seeds():
    summary = summarise(_records(), "test_precision_at_1", step=10)
    assert summary["random"] == pytest.approx((0.45, 0.4, 0.5))
    assert summary["semi-hard"] == pytest.approx((0.75, 0.7, 0.8))
    with pytest.raises(ValueError, match="no record"):
        summarise(_records(), "loss", step=0)


def test_comparison_has_one_panel_per_key_with_a_band_per_strategy():
    figure = plot_comparison(_records(), keys=("loss", "test_map_at_r", "random_mean_d_an"))
    assert len(figure.axes) == 3 and all(ax.get_xlabel() == "gradient step" for ax in figure.axes)
    loss, map_at_r, _ = figure.axes
    assert [line.get_label() for line in map_at_r.get_lines()] == ["random", "semi-hard"]
    assert list(map_at_r.get_lines()[0].get_ydata()) == pytest.approx([0.175, 0.225])  # mean over seeds
    assert len(map_at_r.collections) == 2 and list(loss.get_lines()[0].get_xdata()) == [10]  # no loss at step 0
    with pytest.raises(ValueError, match="no record has a value"):
        plot_comparison(_records(), keys=("accuracy",))
