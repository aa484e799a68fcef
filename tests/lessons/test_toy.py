"""The toy gradient descent on 2-D points: it reaches J = 0 and moves points the way F7 says."""
import pytest
import torch

from course_utils.core import reference
from course_utils.lessons.toy_training import ToyHistory, check_history, make_toy_points, train_toy_points


def tight_start(seed=0):
    """Nearly collapsed, mixed identities: every margin is violated at the start."""
    return make_toy_points(n_identities=3, points_per_identity=4, dim=2, separation=0.1, spread=0.15, seed=seed)


def test_make_toy_points_shapes_labels_and_repeatability():
    points, labels = make_toy_points(n_identities=3, points_per_identity=4, dim=5, seed=7)
    assert points.shape == (12, 5) and points.dtype == torch.float64
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    again, _ = make_toy_points(n_identities=3, points_per_identity=4, dim=5, seed=7)
    assert torch.equal(points, again)
    other, _ = make_toy_points(n_identities=3, points_per_identity=4, dim=5, seed=8)
    assert not torch.equal(points, other)


def test_make_toy_points_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_toy_points(seed=0)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("seed", range(4))
def test_descent_reaches_zero_cost_and_every_margin_holds(seed):
    points, labels = tight_start(seed)
    history = train_toy_points(points, labels, alpha=0.2, learning_rate=0.0005, max_steps=500)
    assert history.cost[-1] == 0 and history.steps < 500
    assert history.cost[0] > 0 and history.num_active[0] > 0 and history.num_active[-1] == 0
    final = history.points[-1]
    losses = [
        reference.triplet_loss(final[[a]], final[[p]], final[[n]], alpha=0.2)
        for a in range(len(labels)) for p in range(len(labels)) for n in range(len(labels))
        if a != p and labels[a] == labels[p] and labels[a] != labels[n]
    ]
    assert len(losses) == history.num_triplets == 12 * 3 * 8
    assert max(float(loss) for loss in losses) == 0.0
    assert torch.equal(history.points[0], points)  # the start is recorded, the input untouched


@pytest.mark.parametrize("seed", range(4))
def test_positives_pulled_in_negatives_pushed_out(seed):
    history = train_toy_points(*tight_start(seed), alpha=0.2, learning_rate=0.0005)
    assert history.mean_positive_distance[-1] < history.mean_positive_distance[0]
    assert history.mean_negative_distance[-1] > history.mean_negative_distance[0]


def test_cost_matches_the_reference_at_every_recorded_step():
    points, labels = tight_start(1)
    history = train_toy_points(points, labels, alpha=0.2, learning_rate=0.0005)
    triplets = [(a, p, n) for a in range(12) for p in range(12) for n in range(12)
                if a != p and labels[a] == labels[p] and labels[a] != labels[n]]
    a, p, n = (torch.tensor(column) for column in zip(*triplets))
    for step in (0, history.steps // 2, history.steps):
        x = history.points[step]
        expected = reference.triplet_loss(x[a], x[p], x[n], alpha=0.2, reduction="sum")
        assert torch.allclose(history.cost[step], expected)


def test_each_step_is_plain_gradient_descent():
    history = train_toy_points(*tight_start(2), alpha=0.2, learning_rate=0.0005)
    for step in range(history.steps):
        moved = history.points[step] - history.learning_rate * history.gradients[step]
        assert torch.allclose(history.points[step + 1], moved)
    assert torch.equal(history.gradients[-1], torch.zeros_like(history.gradients[-1]))


def test_max_steps_stops_early_without_claiming_success():
    history = train_toy_points(*tight_start(0), alpha=0.2, learning_rate=0.0005, max_steps=3)
    assert history.steps == 3 and history.cost[-1] > 0
    assert isinstance(history, ToyHistory)


def test_bad_input_is_refused_with_a_reason():
    points, labels = tight_start(0)
    with pytest.raises(ValueError, match="shape \\(n, 2\\)"):
        train_toy_points(torch.zeros(12, 3, dtype=torch.float64), labels)
    with pytest.raises(ValueError, match="no valid triplet"):
        train_toy_points(points[:3], torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="learning_rate"):
        train_toy_points(points, labels, learning_rate=0)
    with pytest.raises(ValueError, match="max_steps"):
        train_toy_points(points, labels, max_steps=0)
    with pytest.raises(ValueError, match="at least 2"):
        make_toy_points(points_per_identity=1)
    with pytest.raises(TypeError, match="spread"):
        make_toy_points(spread="wide")


def test_history_and_step_checks():
    history = train_toy_points(*tight_start(0), alpha=0.2, learning_rate=0.0005, max_steps=3)
    assert check_history(history) is history and check_history(history, 3) is history
    with pytest.raises(TypeError, match="train_toy_points"):
        check_history({"cost": [1.0]})
    for bad in (-1, 4, 1.0, True):
        with pytest.raises(ValueError, match="from 0 to 3"):
            check_history(history, bad)
