"""The figures of notebooks 06 and 07 draw labelled axes from the numbers they are given, and refuse bad input."""
import pytest
import torch
from matplotlib.figure import Figure

from course_utils.evaluation.recognition import GallerySizeResult, roc_curve
from course_utils.lessons.evaluation_plots import (
    plot_accuracy_vs_gallery_size,
    plot_distance_histograms,
    plot_embeddings,
    plot_hits_and_misses,
    plot_history,
    plot_retrieval,
    plot_roc,
    plot_threshold,
)


def clustered(seed, n=50, classes=5, dim=6):
    """n points in `classes` well separated clusters, the labels cycling through the classes."""
    labels = torch.arange(n) % classes
    noise = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    return 3 * labels.float().unsqueeze(1) + noise, labels


SAME = torch.tensor([0.1, 0.4, 0.4, 0.9, 1.5])
DIFFERENT = torch.tensor([0.35, 0.8, 1.2, 1.5, 2.0, 3.1])


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projection_is_repeatable_and_refuses_unknown_methods(method):
    embeddings, labels = clustered(0, n=25)
    first, again = (plot_embeddings(embeddings, labels, method=method, seed=1).axes[0] for _ in range(2))
    assert len(first.collections) == 5 and sum(len(c.get_offsets()) for c in first.collections) == 25
    assert all((a.get_offsets() == b.get_offsets()).all() for a, b in zip(first.collections, again.collections))
    with pytest.raises(ValueError, match="unknown method"):
        plot_embeddings(embeddings, labels, method="umap")
    with pytest.raises(ValueError, match="at least 3 points"):
        plot_embeddings(embeddings[:2], labels[:2])


def test_plots_have_labelled_axes():
    embeddings, labels = clustered(0)
    figure = plot_embeddings(*clustered(0, n=60, classes=12))
    (ax,) = figure.axes
    assert ax.get_xlabel() and ax.get_ylabel()
    assert len(ax.collections) == 10  # the 10 smallest identity ids
    (ax,) = plot_distance_histograms(embeddings, labels, alpha=0.2).axes
    assert "squared Euclidean" in ax.get_xlabel() and "density" in ax.get_ylabel()
    history = [
        {"epoch": e, "loss": 0.1 / e, "active_fraction": None, "mean_d_ap": 0.2, "mean_d_an": 1.0,
         "test_map_at_r": 0.1 * e, "test_precision_at_1": 0.2 * e}
        for e in (1, 2)
    ]
    axes = plot_history(history).axes
    assert len(axes) == 3
    assert all(ax.get_xlabel() == "epoch" and ax.get_ylabel() for ax in axes)
    assert [line.get_label() for line in axes[2].get_lines()] == ["test_map_at_r", "test_precision_at_1"]
    with pytest.raises(ValueError, match="non-empty list"):
        plot_history([])


def test_plots_draw_on_given_axes():
    embeddings, labels = clustered(0)
    figure = Figure()
    left, right = figure.subplots(1, 2)
    assert plot_embeddings(embeddings, labels, ax=left) is figure
    assert plot_distance_histograms(embeddings, labels, ax=right) is figure
    assert left.collections and right.patches



def test_roc_and_threshold_plots_have_labelled_axes():
    roc = plot_roc(SAME, DIFFERENT, far=0.2)
    histograms = plot_threshold(SAME, DIFFERENT, threshold=0.8)
    assert isinstance(roc, Figure) and isinstance(histograms, Figure)
    assert "false-accept rate" in roc.axes[0].get_xlabel()
    assert "true-accept rate" in roc.axes[0].get_ylabel()
    assert "squared Euclidean distance" in histograms.axes[0].get_xlabel()
    assert histograms.axes[0].get_title().startswith("threshold 0.80: 2 false accepts")


def test_roc_has_a_log_false_accept_axis_down_to_one_pair():
    axes = plot_roc(SAME, DIFFERENT, far=0.2).axes[0]
    assert axes.get_xscale() == "log" and "log scale" in axes.get_xlabel()
    assert axes.get_xlim() == pytest.approx((1 / len(DIFFERENT), 1))
    curve = axes.get_lines()[0]
    # Rate-0 points sit on the left edge; every other point is where roc_curve puts it.
    expected = roc_curve(SAME, DIFFERENT).false_accept_rate.clamp_min(1 / len(DIFFERENT)).numpy()
    assert curve.get_xdata() == pytest.approx(expected)
    assert axes.xaxis.get_major_formatter()(0.01, 0) == "1 %"



def test_plot_accuracy_vs_gallery_size_draws_one_line_per_name():
    rows = [GallerySizeResult(10, 0.9, 30), GallerySizeResult(100, 0.5, 300)]
    figure = plot_accuracy_vs_gallery_size({"trained": rows, "raw pixels": rows[:1]})
    ax = figure.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["trained", "raw pixels"]
    assert list(ax.get_lines()[0].get_ydata()) == [90.0, 50.0]
    assert "%" in ax.get_ylabel() and "enrolled" in ax.get_xlabel()
    for bad in ({"bad": [0.5]}, {"empty": []}, {}):
        with pytest.raises(TypeError, match="accuracy_vs_gallery_size"):
            plot_accuracy_vs_gallery_size(bad)


def test_hits_and_misses_label_every_column():
    pictures = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    figure = plot_hits_and_misses(pictures, pictures.flip(0), torch.tensor([0.1234, 0.5, 2.0]),
                                  torch.tensor([True, False, True]))
    assert isinstance(figure, Figure) and len(figure.axes) == 6
    labels = [ax.get_xlabel() for ax in figure.axes[3:]]
    assert labels == ["d = 0.12\n\u2713 right", "d = 0.50\n\u2717 wrong", "d = 2.00\n\u2713 right"]
    with pytest.raises(ValueError, match="one per query"):
        plot_hits_and_misses(pictures, pictures[:2], torch.zeros(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        plot_hits_and_misses(pictures, pictures, torch.zeros(3), torch.ones(3))


def test_retrieval_figure_shows_query_and_ranked_results():
    pictures = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    figure = plot_retrieval(pictures[0], pictures[1:], torch.tensor([0.2, 0.3, 0.9]), torch.tensor([True, True, False]))
    assert len(figure.axes) == 4 and figure.axes[0].get_ylabel() == "query" and figure.axes[0].get_xlabel() == ""
    assert figure.axes[1].get_xlabel() == "d = 0.20\n\u2713 same person"
    assert figure.axes[3].get_xlabel() == "d = 0.90\n\u2717 other person"
    with pytest.raises(ValueError, match="query_picture must have shape"):
        plot_retrieval(pictures[0, 0], pictures[1:], torch.zeros(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        plot_retrieval(pictures[0], pictures[1:, 0], torch.zeros(3), torch.ones(3, dtype=torch.bool))

