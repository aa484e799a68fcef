"""The exercise checks of notebooks 01-03 and the runner behind every check: right code passes, each typical
mistake gets its own hint, a stub gets a kind word. The mistaken functions are written the way a learner
would write them, not derived from the mistake models in course_utils.checks.basics."""
import math
from dataclasses import replace

import pytest
import torch

from course_utils.core import reference
from course_utils.checks.basics import (DISTANCE_MATRIX, MEAN_OVER_ACTIVE, TRIPLET_LOSS, check_distance_matrix,
                                        check_mean_over_active, check_triplet_loss)
from course_utils.checks.runner import CheckResult, fresh_copies, run_check


def stub(*args):
    # YOUR CODE HERE
    raise NotImplementedError()


# --- distance matrix (notebook 01) -----------------------------------------------


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


def distance_matrix_loop_inside_try(x):
    try:
        return distance_matrix_pair_loop(x)
    except Exception:  # noqa: BLE001
        return distance_matrix(x)


DISTANCE_MATRIX_MISTAKES = {
    "not_squared": lambda x: torch.cdist(x, x),
    "no_sum": lambda x: (x[:, None, :] - x[None, :, :]) ** 2,
    "broadcast_sum_wrong_axis": lambda x: ((x[:, None, :] - x[None, :, :]) ** 2).sum(dim=1),
    "cross_term_sign": lambda x: (x * x).sum(1)[:, None] + 2 * x @ x.T + (x * x).sum(1)[None, :],
    "no_clamp": distance_matrix_without_clamp,
    "python_loop": distance_matrix_pair_loop,
    "wrong_shape": lambda x: ((x[:, None, :] - x[None, :, :]) ** 2).sum(dim=2)[:, :1],
}


@pytest.mark.parametrize("solution", [
    distance_matrix,
    lambda x: ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1),
    lambda x: torch.cdist(x, x) ** 2,
    lambda x: torch.relu(distance_matrix_without_clamp(x)),
    lambda x: torch.vmap(lambda row: ((row - x) ** 2).sum(dim=1))(x),
])
def test_distance_matrix_correct_solutions_pass(solution, capsys):
    assert check_distance_matrix(solution).passed
    assert capsys.readouterr().out == "Well done: distance_matrix is correct on all 5 test cases.\n"


@pytest.mark.parametrize("loop", [distance_matrix_pair_loop, distance_matrix_loop_inside_try,
                                  lambda x: torch.stack([((row - x) ** 2).sum(dim=1) for row in x])])
def test_distance_matrix_python_loop_is_named_whatever_its_form(loop):
    result = check_distance_matrix(loop)
    assert result.mistake == "python_loop" and "x[:, None, :] - x[None, :, :]" in result.message


def test_distance_matrix_without_clamp_passes_the_small_cases_but_not_the_round_off_case():
    assert run_check(distance_matrix_without_clamp, replace(DISTANCE_MATRIX, after_cases=())).passed
    result = check_distance_matrix(distance_matrix_without_clamp)
    assert result.mistake == "no_clamp" and "negative" in result.message and ".clamp(min=0)" in result.message


# --- triplet loss (notebook 02) ---------------------------------------------------


def _d(x, y):
    return ((x - y) ** 2).sum(dim=1)


def triplet_loss(anchor, positive, negative, alpha):
    return torch.clamp(_d(anchor, positive) - _d(anchor, negative) + alpha, min=0)


def triplet_loss_loop(anchor, positive, negative, alpha):
    out = torch.zeros(anchor.shape[0])
    for i in range(anchor.shape[0]):
        out[i] = torch.clamp(((anchor[i] - positive[i]) ** 2).sum() - ((anchor[i] - negative[i]) ** 2).sum()
                             + alpha, min=0)
    return out


def in_place(anchor, positive, negative, alpha):
    anchor -= positive
    return torch.clamp((anchor**2).sum(dim=1) - _d(anchor + positive, negative) + alpha, min=0)


def sneaky_in_place(anchor, positive, negative, alpha):
    anchor.data.sub_(positive)  # .data bypasses autograd's in-place guard
    return torch.clamp((anchor**2).sum(dim=1) - _d(anchor + positive, negative) + alpha, min=0)


TRIPLET_LOSS_MISTAKES = {
    "forgot_max": lambda a, p, n, alpha: _d(a, p) - _d(a, n) + alpha,
    "swapped_distances": lambda a, p, n, alpha: torch.relu(_d(a, n) - _d(a, p) + alpha),
    "forgot_alpha": lambda a, p, n, alpha: torch.relu(_d(a, p) - _d(a, n)),
    "not_squared": lambda a, p, n, alpha: torch.relu((a - p).norm(dim=1) - (a - n).norm(dim=1) + alpha),
    "wrong_shape": lambda a, p, n, alpha: torch.relu(_d(a, p) - _d(a, n) + alpha).sum(),
    "python_on_tensor": lambda a, p, n, alpha: max(_d(a, p) - _d(a, n) + alpha, 0),
    "not_a_tensor": lambda a, p, n, alpha: triplet_loss(a, p, n, alpha).detach().numpy(),
    "detached": lambda a, p, n, alpha: torch.tensor(triplet_loss(a, p, n, alpha).tolist()),
    "not_floating": lambda a, p, n, alpha: triplet_loss(a, p, n, alpha).long(),
    "in_place_on_input": in_place,
    "modified_input": sneaky_in_place,
}


@pytest.mark.parametrize("solution", [triplet_loss, triplet_loss_loop])
def test_triplet_loss_correct_solutions_pass(solution, capsys):
    result = check_triplet_loss(solution)
    assert isinstance(result, CheckResult) and result and result.mistake is None
    assert capsys.readouterr().out == "Well done: triplet_loss is correct on all 4 test cases.\n"


def test_a_python_number_is_not_a_tensor_and_none_is_a_missing_return():
    result = check_triplet_loss(lambda a, p, n, alpha: triplet_loss(a, p, n, alpha).tolist()[0])
    assert result.mistake == "not_a_tensor" and "returned a float" in result.message and ".item()" in result.message
    result = check_triplet_loss(lambda a, p, n, alpha: None)
    assert result.mistake == "not_a_tensor" and "did you forget the `return`?" in result.message


def test_unknown_error_is_reported_with_the_case_and_no_traceback(capsys):
    result = check_triplet_loss(lambda a, p, n, alpha: triplet_loss(a, p, n, alpha) + undefined_name)  # noqa: F821
    printed = capsys.readouterr().out
    assert not result and result.mistake is None
    assert "NameError" in printed and TRIPLET_LOSS.cases[0].description in printed and "Traceback" not in printed


def test_unexplained_wrong_values_show_the_answer_and_the_expected_one():
    message = check_triplet_loss(lambda a, p, n, alpha: triplet_loss(a, p, n, alpha) + 1).message
    assert "your answer: [1.2000, 1.0000, 1.3600] (shape (3,))" in message
    assert "expected:    [0.2000, 0.0000, 0.3600] (shape (3,))" in message
    assert message.splitlines()[-1].startswith("  Hint: compute this case by hand")


def test_the_triplet_loss_cases_have_more_rows_than_coordinates_or_fewer():
    """n != d, so a sum over the wrong axis changes the shape."""
    assert all(case.args[0].shape[0] != case.args[0].shape[1] for case in TRIPLET_LOSS.cases)


# --- mean over the active triplets (notebook 03) -------------------------------------


def mean_over_active(losses):
    return losses.sum() / (losses > 0).sum().clamp(min=1)


def mean_over_active_with_if(losses):
    active = losses[losses > 0]
    return losses.sum() * 0 if len(active) == 0 else active.mean()


MEAN_OVER_ACTIVE_MISTAKES = {
    "nan_when_none_active": lambda losses: losses[losses > 0].mean(),
    "mean_over_all": lambda losses: losses.mean(),
    "sum_not_mean": lambda losses: losses.sum(),
    "count_not_mean": lambda losses: (losses > 0).sum(),
    "nan_gradient": lambda losses: torch.where((losses > 0).sum() > 0, losses.sum() / (losses > 0).sum(), 0.0),
    "not_a_tensor": lambda losses: losses[losses > 0].mean() if (losses > 0).any() else 0.0,
    "detached": lambda losses: losses[losses > 0].mean() if (losses > 0).any() else torch.tensor(0.0),
    "python_on_tensor": lambda losses: losses.sum() / (losses > 0).sum() if losses > 0 else losses.sum() * 0,
}


@pytest.mark.parametrize("solution", [mean_over_active, mean_over_active_with_if,
                                      lambda losses: torch.nan_to_num(losses[losses > 0].mean())])
def test_mean_over_active_correct_solutions_pass(solution, capsys):
    assert check_mean_over_active(solution).passed
    assert capsys.readouterr().out == "Well done: mean_over_active is correct on all 5 test cases.\n"


def test_reference_mean_over_active_is_zero_with_a_zero_gradient_when_nothing_is_active():
    losses = torch.zeros(3, requires_grad=True)
    answer = reference.mean_over_active(losses)
    answer.backward()
    assert answer.item() == 0 and torch.equal(losses.grad, torch.zeros(3))
    assert math.isclose(reference.mean_over_active(torch.tensor([0.2, 0.0, 0.4])).item(), 0.3, abs_tol=1e-7)


# --- every exercise of this file: each mistake is named, stubs and non-functions ---------

NAMED_MISTAKES = [(check, name, function) for check, mistakes in [
    (check_distance_matrix, DISTANCE_MATRIX_MISTAKES), (check_triplet_loss, TRIPLET_LOSS_MISTAKES),
    (check_mean_over_active, MEAN_OVER_ACTIVE_MISTAKES)] for name, function in mistakes.items()]


@pytest.mark.parametrize("check,mistake,function", NAMED_MISTAKES,
                         ids=[f"{check.__name__}-{name}" for check, name, _ in NAMED_MISTAKES])
def test_each_mistake_gets_its_own_hint(check, mistake, function, capsys):
    result = check(function)
    assert not result and result.mistake == mistake
    printed = capsys.readouterr().out
    assert printed.strip() == result.message and printed.startswith("Not yet: ") and "Traceback" not in printed
    assert result.message.splitlines()[-1].startswith("  Hint: ")


@pytest.mark.parametrize("check", [check_distance_matrix, check_triplet_loss, check_mean_over_active])
def test_untouched_stub_gets_the_kind_message_and_a_result_is_refused(check, capsys):
    result = check(stub)
    assert not result and result.mistake == "not_implemented"
    assert "not implemented yet" in capsys.readouterr().out
    with pytest.raises(TypeError, match="pass the function itself"):
        check(torch.zeros(3))


@pytest.mark.parametrize("exercise", [DISTANCE_MATRIX, TRIPLET_LOSS, MEAN_OVER_ACTIVE])
def test_no_two_mistakes_look_alike_on_every_case(exercise):
    """Each mistake differs from the right answer and from the others, so its hint is never shown for another slip."""
    answers = {m.name: [m.compute(*case.args) for case in exercise.cases] for m in exercise.mistakes}
    answers["correct"] = [exercise.expected(*case.args) for case in exercise.cases]
    names = sorted(answers)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert not all(exercise.matches(a, b) for a, b in zip(answers[first], answers[second])), (first, second)


def test_fresh_copies_leave_integer_tensors_without_gradient():
    x, labels = torch.randn(3, 2), torch.tensor([0, 0, 1])
    x_copy, labels_copy = fresh_copies((x, labels), requires_grad=True)
    assert x_copy.requires_grad and not labels_copy.requires_grad and torch.equal(labels_copy, labels)
