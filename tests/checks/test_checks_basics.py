"""The exercise checks: right code passes, each typical mistake gets its own hint, a stub gets a kind word.

Every mistaken function below is written the way a learner would write it, not
derived from the mistake models inside course_utils.checks.basics, so these tests show that
real mistaken code is recognised.
"""
import math
from dataclasses import replace

import pytest
import torch

from course_utils.core import reference
from course_utils.checks.basics import (
    DISTANCE_MATRIX,
    MEAN_OVER_ACTIVE,
    TRIPLET_LOSS,
    CheckResult,
    check_distance_matrix,
    check_mean_over_active,
    check_triplet_loss,
    run_check,
    show_side_by_side,
)


def stub(*args):
    # YOUR CODE HERE
    raise NotImplementedError()


# --- distance matrix (notebook 01, challenge) ------------------------------------


def distance_matrix(x):
    squares = (x * x).sum(dim=1)
    return (squares[:, None] - 2 * x @ x.T + squares[None, :]).clamp(min=0)


def distance_matrix_without_clamp(x):
    squares = (x * x).sum(dim=1)
    return squares[:, None] - 2 * x @ x.T + squares[None, :]


def distance_matrix_pair_loop(x):
    n = x.shape[0]
    out = torch.zeros(n, n)
    for i in range(n):
        for j in range(n):
            out[i, j] = ((x[i] - x[j]) ** 2).sum()
    return out


def distance_matrix_row_loop(x):
    return torch.stack([((row - x) ** 2).sum(dim=1) for row in x])


def distance_matrix_loop_inside_try(x):
    """A loop wrapped in `except Exception`: the check's stop must get through it."""
    try:
        return distance_matrix_pair_loop(x)
    except Exception:  # noqa: BLE001
        return distance_matrix(x)


def distance_matrix_long_but_vectorised(x):
    """Many small steps, still a fixed number of them whatever the number of points."""
    x = x.double()
    rows, columns = x.unsqueeze(1), x.unsqueeze(0)
    difference = rows.expand(-1, x.shape[0], -1) - columns.expand(x.shape[0], -1, -1)
    squared = difference.pow(2)
    total = squared.sum(dim=2)
    total = total.float().contiguous().clone()
    total = torch.clamp(total, min=0.0)
    total = (total + total.T) / 2
    return total.reshape(x.shape[0], x.shape[0])


DISTANCE_MATRIX_MISTAKES = {
    "not_squared": lambda x: torch.cdist(x, x),
    "no_sum": lambda x: (x[:, None, :] - x[None, :, :]) ** 2,
    "broadcast_sum_wrong_axis": lambda x: ((x[:, None, :] - x[None, :, :]) ** 2).sum(dim=1),
    "cross_term_sign": lambda x: (x * x).sum(1)[:, None] + 2 * x @ x.T + (x * x).sum(1)[None, :],
    "cross_term_factor": lambda x: (x * x).sum(1)[:, None] - x @ x.T + (x * x).sum(1)[None, :],
    "norms_same_axis": lambda x: (x * x).sum(1) - 2 * x @ x.T + (x * x).sum(1),
    "one_norm_missing": lambda x: (x * x).sum(1)[:, None] - 2 * x @ x.T,
    "no_clamp": distance_matrix_without_clamp,
    "python_loop": distance_matrix_pair_loop,
}


@pytest.mark.parametrize("solution", [
    distance_matrix,
    lambda x: ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1),
    lambda x: ((x[:, None, :] - x[None, :, :]) ** 2).sum(dim=2),
    lambda x: torch.cdist(x, x) ** 2,
    lambda x: torch.relu(distance_matrix_without_clamp(x)),
    lambda x: distance_matrix_without_clamp(x).clamp_min(0),
    lambda x: torch.vmap(lambda row: ((row - x) ** 2).sum(dim=1))(x),
    distance_matrix_long_but_vectorised,
])
def test_distance_matrix_correct_solutions_pass(solution, capsys):
    result = check_distance_matrix(solution)
    assert result.passed, result.message
    assert capsys.readouterr().out.startswith("Well done: distance_matrix is correct")


@pytest.mark.parametrize("loop", [distance_matrix_pair_loop, distance_matrix_row_loop, distance_matrix_loop_inside_try])
def test_distance_matrix_python_loop_is_named_whatever_its_form(loop):
    result = check_distance_matrix(loop)
    assert not result and result.mistake == "python_loop"
    assert "Python loop" in result.message and "x[:, None, :] - x[None, :, :]" in result.message


def test_distance_matrix_without_clamp_is_caught_on_round_off():
    """Correct on the small cases, negative where points nearly coincide at large coordinates."""
    small_cases_only = replace(DISTANCE_MATRIX, after_cases=())
    assert run_check(distance_matrix_without_clamp, small_cases_only).passed
    result = check_distance_matrix(distance_matrix_without_clamp)
    assert result.mistake == "no_clamp"
    assert "negative" in result.message and ".clamp(min=0)" in result.message


def test_distance_matrix_wrong_answer_is_shown_as_two_small_matrices():
    result = check_distance_matrix(lambda x: distance_matrix(x) + 1)
    assert result.mistake is None
    lines = result.message.splitlines()
    header = next(line for line in lines if "your answer, shape (3, 3)" in line)
    assert "expected, shape (3, 3)" in header
    # Row 0 of the 3-4-5 example: the learner's 1, 26, 2 (all marked) beside the expected 0, 25, 1.
    row = lines[lines.index(header) + 1].split()
    assert row == ["1.0000*", "26.0000*", "2.0000*", "0.0000", "25.0000", "1.0000"]


def test_distance_matrix_wrong_shape_hint_puts_the_coordinates_on_dim_2():
    result = check_distance_matrix(lambda x: ((x[:, None, :] - x[None, :, :]) ** 2).sum(dim=1)[:, :1])
    assert result.mistake == "wrong_shape"
    assert "dim=2" in result.message and "dim=1 adds up" not in result.message


def test_side_by_side_falls_back_to_flat_lists_for_large_answers():
    shown = show_side_by_side(torch.zeros(7, 7), torch.ones(7, 7))
    assert "your answer: [0.0000" in shown and "expected:    [1.0000" in shown


# --- triplet loss (notebook 02) ---------------------------------------------------


def triplet_loss(anchor, positive, negative, alpha):
    d_ap = ((anchor - positive) ** 2).sum(dim=1)
    d_an = ((anchor - negative) ** 2).sum(dim=1)
    return torch.clamp(d_ap - d_an + alpha, min=0)


def _d(x, y):
    return ((x - y) ** 2).sum(dim=1)


def triplet_loss_loop(anchor, positive, negative, alpha):
    out = torch.zeros(anchor.shape[0])
    for i in range(anchor.shape[0]):
        d_ap = sum((anchor[i, k] - positive[i, k]) ** 2 for k in range(anchor.shape[1]))
        d_an = sum((anchor[i, k] - negative[i, k]) ** 2 for k in range(anchor.shape[1]))
        out[i] = torch.clamp(d_ap - d_an + alpha, min=0)
    return out


def builtin_max(anchor, positive, negative, alpha):
    return max(_d(anchor, positive) - _d(anchor, negative) + alpha, 0)


TRIPLET_LOSS_MISTAKES = {
    "forgot_max": lambda a, p, n, alpha: _d(a, p) - _d(a, n) + alpha,
    "min_not_max": lambda a, p, n, alpha: torch.clamp(_d(a, p) - _d(a, n) + alpha, max=0),
    "swapped_distances": lambda a, p, n, alpha: torch.relu(_d(a, n) - _d(a, p) + alpha),
    "forgot_alpha": lambda a, p, n, alpha: torch.relu(_d(a, p) - _d(a, n)),
    "alpha_subtracted": lambda a, p, n, alpha: torch.relu(_d(a, p) - _d(a, n) - alpha),
    "not_squared": lambda a, p, n, alpha: torch.relu((a - p).norm(dim=1) - (a - n).norm(dim=1) + alpha),
    "reduced_sum": lambda a, p, n, alpha: torch.relu(_d(a, p) - _d(a, n) + alpha).sum(),
    "reduced_mean": lambda a, p, n, alpha: torch.relu(_d(a, p) - _d(a, n) + alpha).mean(),
    "sum_wrong_axis": lambda a, p, n, alpha: torch.relu(((a - p) ** 2).sum(0) - ((a - n) ** 2).sum(0) + alpha),
    "no_sum": lambda a, p, n, alpha: torch.relu((a - p) ** 2 - (a - n) ** 2 + alpha),
    "builtin_max": builtin_max,
    "python_number": lambda a, p, n, alpha: triplet_loss(a, p, n, alpha).tolist()[0],
    "not_a_tensor": lambda a, p, n, alpha: triplet_loss(a, p, n, alpha).detach().numpy(),
    "returned_none": lambda a, p, n, alpha: None,
    "detached": lambda a, p, n, alpha: torch.tensor(triplet_loss(a, p, n, alpha).tolist()),
    "not_floating": lambda a, p, n, alpha: triplet_loss(a, p, n, alpha).long(),
}


@pytest.mark.parametrize("solution", [triplet_loss, triplet_loss_loop])
def test_triplet_loss_correct_solutions_pass(solution, capsys):
    result = check_triplet_loss(solution)
    assert isinstance(result, CheckResult)
    assert result and result.passed and result.mistake is None
    expected = f"Well done: triplet_loss is correct on all {len(TRIPLET_LOSS.cases)} test cases."
    assert capsys.readouterr().out.strip() == expected


def test_triplet_loss_with_the_course_function_passes():
    from course_utils.core.losses import triplet_loss as course_triplet_loss

    assert check_triplet_loss(lambda a, p, n, alpha: course_triplet_loss(a, p, n, alpha=alpha))


def test_forgot_max_hint_mentions_the_max():
    result = check_triplet_loss(TRIPLET_LOSS_MISTAKES["forgot_max"])
    assert "forgot the max with 0" in result.message


def test_builtin_max_on_one_triplet_is_a_python_number():
    """On a single triplet that meets the margin, Python's max returns the int 0."""
    one_triplet = TRIPLET_LOSS.cases[3]
    assert builtin_max(*one_triplet.args) == 0 and isinstance(builtin_max(*one_triplet.args), int)
    def builtin_max_on_single_triplets(a, p, n, alpha):
        return builtin_max(a, p, n, alpha) if len(a) == 1 else triplet_loss(a, p, n, alpha)

    result = check_triplet_loss(builtin_max_on_single_triplets)
    assert result.mistake == "python_number"
    assert "built-in max" in result.message


# --- what the runner does for every exercise, shown on the triplet loss ---------------


def test_in_place_change_of_the_input_is_reported():
    def in_place(anchor, positive, negative, alpha):
        anchor -= positive  # anchor now holds anchor - positive
        d_ap = (anchor**2).sum(dim=1)
        return torch.clamp(d_ap - _d(anchor + positive, negative) + alpha, min=0)

    result = check_triplet_loss(in_place)
    assert result.mistake == "in_place_on_input"
    assert "diff = a - b" in result.message


def test_input_changed_behind_autograd_s_back_is_reported():
    def sneaky_in_place(anchor, positive, negative, alpha):
        anchor.data.sub_(positive)  # .data bypasses autograd's in-place guard
        d_ap = (anchor**2).sum(dim=1)
        return torch.clamp(d_ap - _d(anchor + positive, negative) + alpha, min=0)

    result = check_triplet_loss(sneaky_in_place)
    assert result.mistake == "modified_input"
    assert "in-place" in result.message


@pytest.mark.parametrize("check", [check_distance_matrix, check_triplet_loss, check_mean_over_active])
def test_untouched_stub_gets_the_kind_message(check, capsys):
    result = check(stub)
    assert not result and result.mistake == "not_implemented"
    printed = capsys.readouterr().out
    assert "not implemented yet" in printed and "raise NotImplementedError()" in printed
    assert "Traceback" not in printed and "Error:" not in printed


@pytest.mark.parametrize("check", [check_triplet_loss, check_mean_over_active])
def test_passing_the_result_instead_of_the_function_is_refused(check):
    with pytest.raises(TypeError, match="pass the function itself"):
        check(torch.zeros(3))


def test_unknown_error_is_reported_with_the_case_and_no_traceback(capsys):
    def broken(anchor, positive, negative, alpha):
        return triplet_loss(anchor, positive, negative, alpha) + undefined_name  # noqa: F821

    result = check_triplet_loss(broken)
    printed = capsys.readouterr().out
    assert not result and result.mistake is None
    assert "NameError" in printed and "undefined_name" in printed
    assert TRIPLET_LOSS.cases[0].description in printed
    assert "Traceback" not in printed


def test_unexplained_wrong_values_show_expected_and_received(capsys):
    result = check_triplet_loss(lambda a, p, n, alpha: triplet_loss(a, p, n, alpha) + 1)
    printed = capsys.readouterr().out
    assert not result and result.mistake is None
    assert "your answer: [1.2000, 1.0000, 1.3600]" in printed and "expected:    [0.2000, 0.0000, 0.3600]" in printed


def test_unexplained_wrong_shape_says_which_shape(capsys):
    result = check_triplet_loss(lambda a, p, n, alpha: torch.zeros(7))
    assert result.mistake == "wrong_shape"
    assert "returns shape (7,) where (3,) is expected" in capsys.readouterr().out


# --- mean over the active triplets (notebook 03) -------------------------------------


def mean_over_active(losses):
    return losses.sum() / (losses > 0).sum().clamp(min=1)


def mean_over_active_with_if(losses):
    active = losses[losses > 0]
    if len(active) == 0:
        return losses.sum() * 0
    return active.mean()


def mean_over_active_loop(losses):
    total, count = losses.sum() * 0, 0
    for loss in losses:
        if loss > 0:
            total, count = total + loss, count + 1
    return total / max(count, 1)


def mean_over_active_where(losses):
    count = (losses > 0).sum()
    return torch.where(count > 0, losses.sum() / count, torch.zeros(()))


def mean_over_active_python_zero(losses):
    active = losses[losses > 0]
    return active.mean() if len(active) else 0.0


def mean_over_active_tensor_zero(losses):
    active = losses[losses > 0]
    return active.mean() if len(active) else torch.tensor(0.0)


MEAN_OVER_ACTIVE_MISTAKES = {
    "nan_when_none_active": lambda losses: losses[losses > 0].mean(),
    "mean_over_all": lambda losses: losses.mean(),
    "sum_not_mean": lambda losses: losses.sum(),
    "count_not_mean": lambda losses: (losses > 0).sum().float(),
    "mean_over_inactive": lambda losses: losses.sum() / (losses == 0).sum().clamp(min=1),
    "nan_gradient": mean_over_active_where,
    "python_number": mean_over_active_python_zero,
    "detached": mean_over_active_tensor_zero,
    "builtin_max": lambda losses: losses.sum() / (losses > 0).sum() if losses > 0 else losses.sum() * 0,
}


@pytest.mark.parametrize("solution", [mean_over_active, mean_over_active_with_if, mean_over_active_loop,
                                      lambda losses: torch.nan_to_num(losses[losses > 0].mean())])
def test_mean_over_active_correct_solutions_pass(solution, capsys):
    result = check_mean_over_active(solution)
    assert result.passed, result.message
    expected = f"Well done: mean_over_active is correct on all {len(MEAN_OVER_ACTIVE.cases) + 1} test cases."
    assert capsys.readouterr().out.strip() == expected


def test_mean_over_active_nan_hint_says_what_to_return():
    result = check_mean_over_active(MEAN_OVER_ACTIVE_MISTAKES["nan_when_none_active"])
    assert "tensor(nan)" in result.message and "clamp(min=1)" in result.message


def test_python_float_with_right_value_says_so():
    result = check_mean_over_active(lambda losses: mean_over_active(losses).item())
    assert result.mistake == "python_number"
    assert "The value is right; only its type is wrong." in result.message and "x.sum() * 0" not in result.message


def test_mean_over_active_python_zero_is_told_how_to_keep_a_tensor():
    result = check_mean_over_active(mean_over_active_python_zero)
    assert "The value is right" in result.message and "x.sum() * 0" in result.message


def test_reference_mean_over_active_is_zero_with_a_zero_gradient_when_nothing_is_active():
    losses = torch.zeros(3, requires_grad=True)
    answer = reference.mean_over_active(losses)
    answer.backward()
    assert answer.item() == 0 and torch.equal(losses.grad, torch.zeros(3))
    assert math.isclose(reference.mean_over_active(torch.tensor([0.2, 0.0, 0.4])).item(), 0.3, abs_tol=1e-7)


# --- every exercise: each mistake written as a learner would is named -------------------

NAMED_MISTAKES = [
    (check, exercise, mistake, function)
    for check, exercise, mistakes in [
        (check_distance_matrix, DISTANCE_MATRIX, DISTANCE_MATRIX_MISTAKES),
        (check_triplet_loss, TRIPLET_LOSS, TRIPLET_LOSS_MISTAKES),
        (check_mean_over_active, MEAN_OVER_ACTIVE, MEAN_OVER_ACTIVE_MISTAKES),
    ]
    for mistake, function in sorted(mistakes.items())
]


@pytest.mark.parametrize("check,exercise,mistake,function", NAMED_MISTAKES,
                         ids=[f"{exercise.name}-{mistake}" for _, exercise, mistake, _ in NAMED_MISTAKES])
def test_each_mistake_gets_its_own_hint(check, exercise, mistake, function, capsys):
    result = check(function)
    assert not result
    assert result.mistake == mistake
    printed = capsys.readouterr().out
    assert printed.strip() == result.message
    assert printed.startswith(f"Not yet: {exercise.name}")
    assert "Traceback" not in printed


@pytest.mark.parametrize("exercise", [DISTANCE_MATRIX, TRIPLET_LOSS, MEAN_OVER_ACTIVE])
def test_no_two_mistakes_look_alike_on_every_case(exercise):
    """Each mistake must be told apart from the right answer and from the other mistakes,
    otherwise its hint could be shown for the wrong slip."""
    outputs = {}
    for mistake in exercise.mistakes:
        outputs.setdefault(mistake.name, []).append([mistake.compute(*case.args) for case in exercise.cases])
    outputs["correct"] = [[exercise.expected(*case.args) for case in exercise.cases]]
    names = sorted(outputs)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            for a_runs in outputs[first]:
                for b_runs in outputs[second]:
                    same = all(
                        a.shape == b.shape and torch.allclose(a.double(), b.double(), atol=1e-4)
                        for a, b in zip(a_runs, b_runs)
                    )
                    assert not same, f"{exercise.name}: {first} and {second} give the same answers on every case"


def test_cases_are_not_degenerate():
    """Rows and coordinates differ in number, so a sum over the wrong axis changes the shape."""
    for case in TRIPLET_LOSS.cases:
        n, d = case.args[0].shape
        assert n != d, case.description
    assert math.isclose(float(TRIPLET_LOSS.expected(*TRIPLET_LOSS.cases[0].args)[0]), 0.2, abs_tol=1e-6)


def test_fresh_copies_leave_integer_tensors_without_gradient():
    """Exercises that take labels and need gradients must not crash on the integer argument."""
    from course_utils.checks.runner import fresh_copies

    x, labels = torch.randn(3, 2), torch.tensor([0, 0, 1])
    x_copy, labels_copy = fresh_copies((x, labels), requires_grad=True)
    assert x_copy.requires_grad and not labels_copy.requires_grad and torch.equal(labels_copy, labels)
