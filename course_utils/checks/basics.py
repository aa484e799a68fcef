"""Checks of notebooks 01-03: the distance matrix, the triplet loss and the mean over the active triplets."""
from __future__ import annotations

from dataclasses import replace

import torch
from torch.overrides import TorchFunctionMode

from course_utils.checks.runner import (Case, CheckResult, Exercise, Mistake, collect_answers, explain_exception, fail,
                                        fresh_copies, grid, run_check, squared_distances)
from course_utils.core import reference


def _random(seed: int, *shape: int) -> torch.Tensor:
    """Fixed pseudo-random float32 values with one decimal, easy to recompute by hand."""
    return torch.randint(-20, 21, shape, generator=torch.Generator().manual_seed(seed)).float() / 10


# Notebook 01: the vectorised matrix of all squared distances.


def _pair_squares(x: torch.Tensor) -> torch.Tensor:
    """(n, n, d): the squared coordinate differences of every pair of rows."""
    return (x[:, None, :].double() - x[None, :, :].double()) ** 2


def _near_duplicates(seed: int, n: int, d: int) -> torch.Tensor:
    """n points near 1000 with a copy and a copy nudged by 0.001: distances below the float32 round-off."""
    generator = torch.Generator().manual_seed(seed)
    base = 1000 * (1 + torch.rand(n, d, generator=generator))
    nudge = torch.randint(-1, 2, (n, d), generator=generator).float() * 1e-3
    return torch.cat([base, base, base + nudge])


ROUND_OFF_CASE = Case("36 points in 16-D near 1000, each with a copy and a near copy", (_near_duplicates(14, 12, 16),))
LOOP_CASE = Case("100 points in 3-D", (_random(15, 100, 3),))


class _CountTorchCalls(TorchFunctionMode):
    """Counts the (outermost) torch calls a piece of code makes."""

    calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def _no_negative_distance(function, exercise: Exercise) -> CheckResult | None:
    """None when the answer on ROUND_OFF_CASE has no negative entry (its round-off is not judged)."""
    answers = collect_answers(function, replace(exercise, cases=(ROUND_OFF_CASE,)), exercise.needs_gradient)
    if isinstance(answers, CheckResult):
        return answers
    negative = int((answers[0].detach() < 0).sum()) if isinstance(answers[0], torch.Tensor) else 0
    if negative == 0:
        return None
    return fail(exercise.name, f"gives {negative} negative squared distances on \"{ROUND_OFF_CASE.description}\".",
                "in float32, ||x_i||² - 2 x_i·x_j + ||x_j||² of nearby points far from 0 leaves only round-off, "
                "negative as often as positive. A squared distance is never negative: finish with .clamp(min=0).",
                "no_clamp")


def _no_python_loop(function, exercise: Exercise) -> CheckResult | None:
    """Fail on more torch calls than points: a loop makes at least one per point, a vectorised answer 2 to 15."""
    inputs = fresh_copies(LOOP_CASE.args, exercise.needs_gradient)
    try:
        with _CountTorchCalls() as counter:
            function(*inputs)
    except Exception as error:  # noqa: BLE001 - any error in learner code is reported, not raised
        return explain_exception(exercise, LOOP_CASE, error)
    if counter.calls <= len(inputs[0]):
        return None
    return fail(exercise.name, f"gives the right numbers, but with a Python loop: {counter.calls} tensor operations "
                f"on \"{LOOP_CASE.description}\".", "a loop is far too slow for real batches. Build all pairs at once: "
                "the broadcast difference x[:, None, :] - x[None, :, :], or the expansion with x @ x.T.", "python_loop")


DISTANCE_MATRIX = Exercise(
    name="distance_matrix",
    returns="the (n, n) matrix of squared distances between all rows",
    expected=lambda x: reference.pairwise_distances(x),
    cases=(
        Case("three points in 2-D", (grid([0.0, 0.0], [3.0, 4.0], [1.0, 0.0]),)),
        Case("five points in 3-D", (_random(6, 5, 3),)),
        Case("four points in 6-D, two of them equal", (torch.cat([_random(7, 3, 6), _random(7, 1, 6)]),)),
    ),
    mistakes=(
        Mistake("not_squared", lambda x: reference.pairwise_distances(x, metric="euclidean"),
                "these are plain Euclidean distances: the course's d is the square ||x_i - x_j||² (square cdist)."),
        Mistake("no_sum", _pair_squares, "the result still has the coordinate axis, shape (n, n, d): .sum(dim=2)."),
        Mistake("broadcast_sum_wrong_axis", lambda x: _pair_squares(x).sum(dim=1),
                "you added up over the points instead of the coordinates. In x[:, None, :] - x[None, :, :], "
                "shape (n, n, d), dims 0 and 1 are the two points of a pair: add up with .sum(dim=2)."),
        Mistake("cross_term_sign", lambda x: reference.pairwise_distances(x) + 4 * x.double() @ x.double().T,
                "check the sign of the cross term: ||x_i - x_j||² = ||x_i||² - 2 x_i·x_j + ||x_j||²."),
    ),
    after_cases=(_no_negative_distance, _no_python_loop),
)


def check_distance_matrix(function) -> CheckResult:
    """Check a learner's distance_matrix(x): (n, d) -> (n, n) of ||x_i - x_j||^2, without round-off below 0 or loops."""
    return run_check(function, DISTANCE_MATRIX)


# Notebook 02: the triplet loss of each triplet.


def _violations(anchor, positive, negative, alpha, root=False) -> torch.Tensor:
    """float64 d(A,P) - d(A,N) + alpha for every triplet, before the max with 0 (root: with plain distances)."""
    d_ap, d_an = squared_distances(anchor, positive), squared_distances(anchor, negative)
    return (d_ap.sqrt() - d_an.sqrt() if root else d_ap - d_an) + alpha


TRIPLET_LOSS = Exercise(
    name="triplet_loss",
    returns="one loss per triplet, a tensor of shape (m,)",
    expected=lambda anchor, positive, negative, alpha: reference.triplet_loss(anchor, positive, negative, alpha),
    cases=(
        # Some meet the margin, some violate it, and n != d: every mistake gives different numbers.
        Case("three triplets in 2-D, alpha = 0.2", (grid([0.0, 0.0], [1.0, 1.0], [0.0, 1.0]),
                                                    grid([0.5, 0.5], [1.0, 1.5], [0.0, 0.5]),
                                                    grid([0.7, 0.1], [2.0, 2.0], [0.3, 1.0]), 0.2)),
        Case("four triplets in 3-D, alpha = 0.5", (_random(8, 4, 3), _random(9, 4, 3), _random(10, 4, 3), 0.5)),
        Case("two triplets of all-equal encodings, alpha = 0.3",
             (torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3), 0.3)),
        Case("one triplet that meets the margin, alpha = 0.2",
             (grid([0.0, 0.0]), grid([0.5, 0.0]), grid([0.0, 1.0]), 0.2)),
    ),
    mistakes=(
        Mistake("forgot_max", _violations, "some losses are negative: you forgot the max with 0. A triplet that meets "
                "the margin has loss 0, not a reward: torch.clamp(d_ap - d_an + alpha, min=0)."),
        Mistake("swapped_distances", lambda a, p, n, alpha: (alpha - _violations(a, p, n, 0)).clamp(min=0),
                "d(A,P) and d(A,N) are swapped: the loss is max(d(A,P) - d(A,N) + alpha, 0)."),
        Mistake("forgot_alpha", lambda a, p, n, alpha: _violations(a, p, n, 0).clamp(min=0),
                "the margin is missing: max(d(A,P) - d(A,N) + alpha, 0). Without it equal encodings cost nothing."),
        Mistake("not_squared", lambda a, p, n, alpha: _violations(a, p, n, alpha, root=True).clamp(min=0),
                "you used plain Euclidean distances: the course's d is the squared distance ||a - b||²."),
    ),
)


def check_triplet_loss(function) -> CheckResult:
    """Check a learner's triplet_loss(anchor, positive, negative, alpha): (m, d) x 3 -> (m,)."""
    return run_check(function, TRIPLET_LOSS)


# Notebook 03: the mean over the active triplets, 0 (not NaN) when none is active.

NONE_ACTIVE_CASE = Case("five losses, all 0: no triplet is active", (torch.zeros(5),))


def _nan_free_gradient(function, exercise: Exercise) -> CheckResult | None:
    (losses,) = fresh_copies(NONE_ACTIVE_CASE.args, requires_grad=True)  # a case the function passed already
    (gradient,) = torch.autograd.grad(function(losses), losses, allow_unused=True)
    if gradient is None or bool(torch.isfinite(gradient).all()):
        return None
    return fail(exercise.name, f"returns 0 on \"{NONE_ACTIVE_CASE.description}\", but a nan gradient, which turns "
                "every weight into nan.", "torch.where(count > 0, total / count, 0) still computes 0 / 0, whose "
                "gradient is nan. Divide by a count that cannot be 0: total / count.clamp(min=1).", "nan_gradient")


MEAN_OVER_ACTIVE = Exercise(
    name="mean_over_active",
    returns="the mean of the positive losses as one number, a 0-d tensor (0 when no loss is positive)",
    expected=reference.mean_over_active,
    cases=(
        Case("four losses, three of them positive", (grid(0.2, 0.12, 0.0, 0.95),)),
        Case("six losses, two of them positive", (grid(0.0, 0.5, 0.0, 0.0, 0.1, 0.0),)),
        NONE_ACTIVE_CASE,
        Case("three losses, all positive", (grid(0.3, 0.1, 0.2),)),
    ),
    mistakes=(
        Mistake("nan_when_none_active", lambda losses: losses.double()[losses > 0].mean(),
                "when no triplet is active your answer is nan (the mean of nothing is 0 / 0), which turns every "
                "weight into nan. Return 0 then: divide the sum by the count clamped at 1, count.clamp(min=1)."),
        Mistake("mean_over_all", lambda losses: losses.double().mean(),
                "you divided by all m triplets, the inactive ones included. Divide the sum by the number of "
                "triplets whose loss is positive, (losses > 0).sum()."),
        Mistake("sum_not_mean", lambda losses: losses.double().sum(),
                "you returned the sum J. Divide it by the number of active triplets, (losses > 0).sum()."),
        Mistake("count_not_mean", lambda losses: (losses > 0).sum().double(),
                "you returned how many triplets are active. Divide the sum of the losses by that count."),
    ),
    after_cases=(_nan_free_gradient,),
)


def check_mean_over_active(function) -> CheckResult:
    """Check a learner's mean_over_active(losses): (m,) -> 0-d mean of the positive losses (0 when none)."""
    return run_check(function, MEAN_OVER_ACTIVE)
