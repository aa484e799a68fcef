"""The plot helpers draw labelled figures from the numbers they are given, and refuse bad input."""
import pytest
import torch
from matplotlib.figure import Figure

from course_utils.core.distances import pairwise_distances
from course_utils.lessons.plots import (
    plot_cost_history,
    plot_distance_matrix,
    plot_reductions,
    plot_toy_snapshots,
    plot_unit_sphere_distances,
)
from course_utils.lessons.toy_training import make_toy_points


def all_axes_labelled(figure):
    return all(ax.get_xlabel() and ax.get_ylabel() for ax in figure.axes if ax.get_label() != "<colorbar>")


def test_distance_matrix_groups_pictures_by_identity():
    points, labels = make_toy_points(n_identities=3, points_per_identity=3, dim=4, seed=0)
    shuffle = torch.tensor([4, 0, 8, 2, 6, 1, 3, 7, 5])
    figure = plot_distance_matrix(pairwise_distances(points[shuffle]), labels[shuffle])
    ax = figure.axes[0]
    shown = torch.tensor(ax.images[0].get_array().data)
    # Grouped by identity, keeping the given order inside each identity: 0 (from 0, 2, 1), 1, 2.
    regrouped = torch.tensor([0, 2, 1, 4, 3, 5, 8, 6, 7])
    assert labels[regrouped].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert torch.allclose(shown, pairwise_distances(points[regrouped]), atol=1e-12)
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(v) for v in labels.tolist()]
    assert all_axes_labelled(figure)


def test_distance_matrix_refuses_a_non_square_matrix():
    with pytest.raises(ValueError, match="square"):
        plot_distance_matrix(torch.zeros(3, 4), torch.tensor([0, 0, 1]))


def test_unit_sphere_points_lie_on_the_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(41, 8, generator=g), dim=1)
    figure = plot_unit_sphere_distances(x[0], x[1:])
    left = figure.axes[0]
    offsets = torch.tensor(left.collections[0].get_offsets().data)
    assert torch.allclose(offsets[:, 0], offsets[:, 1], atol=1e-5)  # 2 - 2 cos equals ||a - b||^2
    assert all_axes_labelled(figure)


def test_unit_sphere_refuses_vectors_that_are_not_unit():
    with pytest.raises(ValueError, match="unit vectors"):
        plot_unit_sphere_distances(torch.ones(3), torch.ones(5, 3))


def test_toy_figures(toy_history):
    figures = (plot_toy_snapshots(toy_history, [0, toy_history.steps]), plot_cost_history(toy_history),
               plot_reductions(toy_history))
    for figure in figures:
        assert isinstance(figure, Figure) and all_axes_labelled(figure)
    cost_line = plot_cost_history(toy_history).axes[0].lines[0]
    assert list(cost_line.get_ydata()) == toy_history.cost.tolist()
    with pytest.raises(ValueError, match="step"):
        plot_toy_snapshots(toy_history, [toy_history.steps + 1])


def test_toy_snapshots_share_their_axes(toy_history):
    """One scale for every panel, so the spread at step 0 can be compared with the last step."""
    first, middle, last = plot_toy_snapshots(toy_history, [0, toy_history.steps // 2, toy_history.steps]).axes[:3]
    assert first.get_shared_x_axes().joined(first, last) and first.get_shared_y_axes().joined(first, middle)
    assert first.get_xlim() == last.get_xlim() and first.get_ylim() == last.get_ylim()
