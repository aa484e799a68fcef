"""Checks of notebooks 01-03: the distance matrix, the triplet loss and the mean over the active triplets."""
from __future__ import annotations

from dataclasses import replace
from itertools import zip_longest

import torch
from torch.overrides import TorchFunctionMode

from course_utils.checks.runner import (ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE, Case, CheckResult, ErrorHint,
                                        Exercise, Mistake, collect_answers, explain_exception, fail, fresh_copies,
                                        grid, row_distances, run_check, show_pair)
from course_utils.core import reference


def _violations(anchor, positive, negative, alpha, metric="squared_euclidean") -> torch.Tensor:
    """float64 d(A,P) - d(A,N) + alpha for every triplet, before the max with 0."""
    return row_distances(anchor, positive, metric) - row_distances(anchor, negative, metric) + alpha


def _squared_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.double() - b.double()) ** 2


def _pair_squares(x: torch.Tensor) -> torch.Tensor:
    """(n, n, d): the squared coordinate differences of every pair of rows."""
    return _squared_diff(x[:, None, :], x[None, :, :])


def _random(seed: int, *shape: int) -> torch.Tensor:
    """Fixed pseudo-random float32 values with one decimal, easy to recompute by hand."""
    return torch.randint(-20, 21, shape, generator=torch.Generator().manual_seed(seed)).float() / 10


# Notebook 01: the vectorised matrix of all squared distances.


def _expansion(x: torch.Tensor, row_norms: float = 1.0, cross: float = -2.0, column_norms: float = 1.0) -> torch.Tensor:
    """row_norms * ||x_i||^2 + cross * x_i.x_j + column_norms * ||x_j||^2, to reproduce slips in any term."""
    x = x.double()
    squared_norms = (x * x).sum(dim=1)
    return row_norms * squared_norms[:, None] + cross * (x @ x.T) + column_norms * squared_norms[None, :]


def _table(value: torch.Tensor, differs: torch.Tensor | None) -> list[str]:
    """The rows of a 1-D or 2-D tensor as text, 4 decimals, an entry that differs marked with *."""
    rows = value.detach().double().reshape(-1, value.shape[-1])  # a 1-D tensor as one row
    marks = torch.zeros(rows.shape, dtype=torch.bool) if differs is None else differs.reshape(rows.shape)
    return ["".join(f"{v:9.4f}{'*' if m else ' '}" for v, m in zip(row, mark))
            for row, mark in zip(rows.tolist(), marks.tolist())]


def show_side_by_side(answer, expected: torch.Tensor, args: tuple = (), largest: int = 6) -> str:
    """A wrong answer and the expected one as tables side by side, differing entries marked with *
    (flat lists when either is not 1-D or 2-D with at most `largest` rows and columns)."""
    def fits(value) -> bool:
        return isinstance(value, torch.Tensor) and 1 <= value.dim() <= 2 and max(value.shape) <= largest

    if not (fits(answer) and fits(expected)):
        return show_pair(answer, expected)
    differs = None
    if answer.shape == expected.shape:
        differs = ~torch.isclose(answer.detach().double(), expected.double(),
                                 rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE)
    left = [f"your answer, shape {tuple(answer.shape)}"] + _table(answer, differs)
    right = [f"expected, shape {tuple(expected.shape)}"] + _table(expected, None)
    width = max(len(line) for line in left) + 4
    lines = [f"    {a:<{width}}{b}".rstrip() for a, b in zip_longest(left, right, fillvalue="")]
    if differs is not None and differs.any():
        lines.append("    (* marks the entries of your answer that differ from the expected ones)")
    return "\n".join(lines)


NORMS_SAME_AXIS_HINT = (
    "both squared-norm terms were added along the same axis. One must be a column, shape (n, 1), "
    "the other a row, shape (1, n): sq[:, None] - 2 * x @ x.T + sq[None, :]."
)
ONE_NORM_MISSING_HINT = "one squared-norm term is missing: ||x_i - x_j||² = ||x_i||² - 2 x_i·x_j + ||x_j||²."


def _near_duplicates(seed: int, n: int, d: int) -> torch.Tensor:
    """n points with coordinates of about 1000, an exact copy of each and a copy nudged by 0.001: their
    squared distances (0 or about 1e-5) are far below the float32 round-off of the expansion (about 1),
    so the expansion without a clamp gives negative entries."""
    generator = torch.Generator().manual_seed(seed)
    base = 1000 * (1 + torch.rand(n, d, generator=generator))
    nudge = torch.randint(-1, 2, (n, d), generator=generator).float() * 1e-3
    return torch.cat([base, base, base + nudge])


ROUND_OFF_CASE = Case("36 points in 16-D with large coordinates, each with a copy and a near copy",
                      (_near_duplicates(14, 12, 16),))
LOOP_CASE = Case("100 points in 3-D", (_random(15, 100, 3),))


class _TooManyTorchCalls(BaseException):
    """Stops a learner's function past its torch-call limit (a BaseException: `except Exception` can't swallow it)."""


class _CountTorchCalls(TorchFunctionMode):
    """Counts the (outermost) torch calls a piece of code makes; past `limit` it raises _TooManyTorchCalls."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.calls = limit, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        if self.calls > self.limit:
            raise _TooManyTorchCalls()
        return func(*args, **(kwargs or {}))


def _no_negative_distance(function, exercise: Exercise) -> CheckResult | None:
    answers = collect_answers(function, replace(exercise, cases=(ROUND_OFF_CASE,)), exercise.needs_gradient)
    if isinstance(answers, CheckResult):
        return answers
    (x,), answer = ROUND_OFF_CASE.args, answers[0]
    if not isinstance(answer, torch.Tensor) or answer.shape != (len(x), len(x)):
        shown = f"shape {tuple(answer.shape)}" if isinstance(answer, torch.Tensor) else f"a {type(answer).__name__}"
        return fail(exercise, f"returns {shown} on the test case \"{ROUND_OFF_CASE.description}\".",
                     f"  Expected {exercise.returns}, here shape {(len(x), len(x))}.\n"
                     "  Hint: make your function work for any number of points n and any size d.", "wrong_shape")
    smallest = answer.detach().min()
    if not smallest < 0:
        return None
    i, j = divmod(int(answer.detach().argmin()), len(x))
    true = float(((x[i].double() - x[j].double()) ** 2).sum())
    return fail(
        exercise, f"gives negative squared distances on the test case \"{ROUND_OFF_CASE.description}\".",
        f"  {int((answer.detach() < 0).sum())} entries are negative; the smallest is {float(smallest):.4f}, at row "
        f"{i}, column {j}, where the true squared distance is {true:.6f}.\n"
        "  Hint: in float32, ||x_i||² - 2 x_i·x_j + ||x_j||² subtracts numbers of about 10^7 that agree in every "
        "digit float32 keeps, so what is left is round-off, negative as often as positive. A squared distance "
        "is never negative: finish with .clamp(min=0), as the exercise asks.", "no_clamp")


def _no_python_loop(function, exercise: Exercise) -> CheckResult | None:
    """Fail when the function makes more torch calls than there are points: a vectorised answer makes the
    same few (about 2 to 15) for any number of points, a loop over points or pairs at least one per point."""
    inputs = fresh_copies(LOOP_CASE.args, exercise.needs_gradient)
    counter = _CountTorchCalls(limit=len(inputs[0]))
    try:
        with counter:
            function(*inputs)
    except _TooManyTorchCalls:
        return fail(
            exercise, "gives the right numbers, but with a Python loop.",
            f"  On the test case \"{LOOP_CASE.description}\" it made more than {counter.limit} tensor operations, more "
            "than one per point; a vectorised answer makes the same handful for any number of points.\n"
            "  Hint: a loop takes one Python step per point or per pair, far too slow for real batches (see the "
            "timing above). Build all pairs at once: the broadcast difference x[:, None, :] - x[None, :, :], or the "
            "expansion with x @ x.T.", "python_loop")
    except Exception as error:  # noqa: BLE001 - any error in learner code is reported, not raised
        return explain_exception(exercise, LOOP_CASE, error)
    return None


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
                "these are plain Euclidean distances. The course's d is the square ||x_i - x_j||²: "
                "drop the square root (torch.cdist gives plain distances; square them)."),
        Mistake("no_sum", _pair_squares,
                "the result still has the coordinate dimension, shape (n, n, d). Add it up with .sum(dim=2) "
                "(or .sum(dim=-1), the last dimension)."),
        Mistake("broadcast_sum_wrong_axis", lambda x: _pair_squares(x).sum(dim=1),
                "you added up over the points instead of the coordinates. The broadcast difference "
                "x[:, None, :] - x[None, :, :] has shape (n, n, d): dims 0 and 1 are the two points of a pair, "
                "dim 2 the coordinates. Add up with .sum(dim=2) (or .sum(dim=-1))."),
        Mistake("cross_term_sign", lambda x: _expansion(x, cross=2.0),
                "check the sign of the cross term: ||x_i - x_j||² = ||x_i||² - 2 x_i·x_j + ||x_j||²."),
        Mistake("cross_term_factor", lambda x: _expansion(x, cross=-1.0),
                "the cross term needs a factor 2: ||x_i||² - 2 x_i·x_j + ||x_j||²."),
        Mistake("norms_same_axis", lambda x: _expansion(x, row_norms=0.0, column_norms=2.0), NORMS_SAME_AXIS_HINT),
        Mistake("norms_same_axis", lambda x: _expansion(x, row_norms=2.0, column_norms=0.0), NORMS_SAME_AXIS_HINT),
        Mistake("one_norm_missing", lambda x: _expansion(x, column_norms=0.0), ONE_NORM_MISSING_HINT),
        Mistake("one_norm_missing", lambda x: _expansion(x, row_norms=0.0), ONE_NORM_MISSING_HINT),
    ),
    show=show_side_by_side,
    shape_hint=("The broadcast difference x[:, None, :] - x[None, :, :] has shape (n, n, d), its coordinates on "
                "dim=2, so add up with .sum(dim=2); with the expansion, one squared-norm term must be a column "
                "(n, 1) and the other a row (1, n)."),
    after_cases=(_no_negative_distance, _no_python_loop),
)


def check_distance_matrix(function) -> CheckResult:
    """Check a learner's distance_matrix(x): (n, d) -> (n, n) of ||x_i - x_j||^2, also for round-off
    (no negative entry) and for a Python loop (counted in torch calls, never timed)."""
    return run_check(function, DISTANCE_MATRIX)


# Notebook 02: the triplet loss of each triplet.

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
        Mistake("forgot_max", lambda a, p, n, alpha: _violations(a, p, n, alpha),
                "some of your losses are negative: you forgot the max with 0. A triplet that meets the margin "
                "has loss 0, not a reward: torch.clamp(d_ap - d_an + alpha, min=0)."),
        Mistake("min_not_max", lambda a, p, n, alpha: _violations(a, p, n, alpha).clamp(max=0),
                "you took the minimum with 0 where the loss needs the maximum: torch.clamp(..., min=0) or torch.relu."),
        Mistake("swapped_distances", lambda a, p, n, alpha: (-_violations(a, p, n, 0) + alpha).clamp(min=0),
                "d(A,P) and d(A,N) are swapped. The loss is max(d(A,P) - d(A,N) + alpha, 0): the positive's "
                "distance comes first."),
        Mistake("forgot_alpha", lambda a, p, n, alpha: _violations(a, p, n, 0).clamp(min=0),
                "the margin alpha is missing: max(d(A,P) - d(A,N) + alpha, 0). Without it, all-equal "
                "encodings get loss 0 and the network can cheat."),
        Mistake("alpha_subtracted", lambda a, p, n, alpha: _violations(a, p, n, -alpha).clamp(min=0),
                "alpha is subtracted; it must be added: max(d(A,P) - d(A,N) + alpha, 0)."),
        Mistake("not_squared", lambda a, p, n, alpha: _violations(a, p, n, alpha, "euclidean").clamp(min=0),
                "you used plain Euclidean distances. The course's d is the squared distance ||a - b||²: "
                "drop the square root."),
        Mistake("reduced_sum", lambda a, p, n, alpha: reference.triplet_loss(a, p, n, alpha, reduction="sum"),
                "you added the losses into one number. This exercise wants one loss per triplet, shape (m,); "
                "adding them up is the cost J of notebook 03."),
        Mistake("reduced_mean", lambda a, p, n, alpha: reference.triplet_loss(a, p, n, alpha, reduction="mean"),
                "you averaged the losses into one number. This exercise wants one loss per triplet, shape (m,)."),
        Mistake("sum_wrong_axis",
                lambda a, p, n, alpha: (_squared_diff(a, p).sum(0) - _squared_diff(a, n).sum(0) + alpha).clamp(min=0),
                "your distances add up over dim=0, across the triplets. Add up each row's coordinates: .sum(dim=1)."),
        Mistake("no_sum", lambda a, p, n, alpha: (_squared_diff(a, p) - _squared_diff(a, n) + alpha).clamp(min=0),
                "the squared differences were never added up over the coordinates; use .sum(dim=1) for each distance."),
    ),
    error_hints=(
        ErrorHint("builtin_max", "Boolean value of Tensor with more than one value is ambiguous",
                  "Python's built-in max(x, 0) (or an `if x > 0`) works on one number at a time. For a whole "
                  "tensor of losses use torch.clamp(x, min=0) or torch.relu(x)."),
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
    return fail(
        exercise, f"returns 0 on the test case \"{NONE_ACTIVE_CASE.description}\", but its gradient there is nan.",
        "  Training calls .backward() on every batch, and one nan in a gradient turns every weight into nan.\n"
        "  Hint: torch.where(count > 0, total / count, 0) still computes total / count = 0 / 0, and its gradient "
        "is nan even though the forward value is not used. Divide by a count that cannot be 0 instead: "
        "total / count.clamp(min=1).", "nan_gradient")


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
                "when no triplet is active your answer is nan: the mean of an empty selection is 0 / 0. Late in "
                "training most batches look like this, and a nan loss turns every weight into nan. Return 0 then: "
                "divide the sum by the number of active triplets clamped at 1, count.clamp(min=1)."),
        Mistake("mean_over_all", lambda losses: losses.double().mean(),
                "you divided by all m triplets, the inactive ones included: that is the plain mean J / m. Divide "
                "the sum by the number of triplets whose loss is positive, (losses > 0).sum()."),
        Mistake("sum_not_mean", lambda losses: losses.double().sum(),
                "you returned the sum J. Divide it by the number of active triplets, (losses > 0).sum()."),
        Mistake("count_not_mean", lambda losses: (losses > 0).sum().double(),
                "you returned how many triplets are active. The exercise wants the mean of their losses: "
                "the sum of the losses divided by that count."),
        Mistake("mean_over_inactive",
                lambda losses: losses.double().sum() / (losses == 0).sum().clamp(min=1),
                "you divided by the number of triplets whose loss is 0. Count the active ones, whose loss "
                "is positive: (losses > 0).sum()."),
    ),
    error_hints=(
        ErrorHint("builtin_max", "Boolean value of Tensor with more than one value is ambiguous",
                  "an `if` on a whole tensor (such as `if losses > 0:`) is ambiguous. Select with a mask, "
                  "losses[losses > 0], or count with (losses > 0).sum()."),
    ),
    after_cases=(_nan_free_gradient,),
)


def check_mean_over_active(function) -> CheckResult:
    """Check a learner's mean_over_active(losses): (m,) -> 0-d mean of the positive losses, 0 with a
    nan-free gradient when none is positive."""
    return run_check(function, MEAN_OVER_ACTIVE)
