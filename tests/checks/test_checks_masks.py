"""Tests of course_utils.checks.masks: each check passes correct code and explains real mistakes."""
import pytest
import torch

from course_utils.core import reference
from course_utils.checks.masks import SEMIHARD_MASK, VALID_TRIPLET_MASK, check_semihard_mask, check_valid_triplet_mask


def good_mask(labels):
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    not_self = ~torch.eye(len(labels), dtype=torch.bool)
    return (same & not_self).unsqueeze(2) & (~same).unsqueeze(1)


def loop_mask(labels):
    n = len(labels)
    mask = torch.zeros(n, n, n, dtype=torch.bool)
    for a in range(n):
        for p in range(n):
            for k in range(n):
                mask[a, p, k] = bool(a != p and labels[a] == labels[p] and labels[a] != labels[k])
    return mask


def with_self(labels):
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    return same.unsqueeze(2) & (~same).unsqueeze(1)


def no_negative(labels):
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    return (same & ~torch.eye(len(labels), dtype=torch.bool)).unsqueeze(2).expand(-1, -1, len(labels))


def two_d(labels):
    return (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~torch.eye(len(labels), dtype=torch.bool)


def not_done(labels):
    raise NotImplementedError()


def forgot_return(labels):
    good_mask(labels)


def bad_broadcast(labels):
    return (labels.unsqueeze(0) == labels.unsqueeze(1)) & torch.ones(len(labels) + 1, dtype=torch.bool)


@pytest.mark.parametrize("function", [good_mask, loop_mask, lambda labels: good_mask(labels).permute(1, 0, 2)])
def test_correct_masks_pass(function, capsys):
    assert check_valid_triplet_mask(function).passed
    assert capsys.readouterr().out == "Well done: valid_triplet_mask is correct on all 4 test cases.\n"


@pytest.mark.parametrize("function, mistake", [
    (with_self, "anchor_is_own_positive"),
    (no_negative, "no_negative_condition"),
    (lambda labels: good_mask(labels).float(), "not_boolean"),
    (two_d, "wrong_shape"),
    (not_done, "not_implemented"),
    (forgot_return, "not_a_tensor"),
    (bad_broadcast, "size_mismatch"),
    (lambda labels: {}[0], None),
])
def test_mistakes_are_named(function, mistake, capsys):
    result = check_valid_triplet_mask(function)
    assert not result.passed and result.mistake == mistake
    assert capsys.readouterr().out.strip() == result.message


@pytest.mark.parametrize("order", [(0, 2, 1), (2, 0, 1), (2, 1, 0), (1, 2, 0)])
def test_every_wrong_order_of_the_axes_is_named(order):
    result = check_valid_triplet_mask(lambda labels: good_mask(labels).permute(*order))
    assert result.mistake == "axes_swapped" and "mask[a, p, n]" in result.message


def test_a_wrong_mask_is_shown_by_its_count_of_true_entries():
    message = check_valid_triplet_mask(lambda labels: good_mask(labels) & (labels != 0)[:, None, None]).message
    assert "your answer: 4 True of 64 entries (shape (4, 4, 4))" in message
    assert "expected:    8 True of 64 entries (shape (4, 4, 4))" in message


def test_passing_a_call_instead_of_the_function_is_explained():
    with pytest.raises(TypeError, match="without parentheses"):
        check_valid_triplet_mask(good_mask(torch.tensor([0, 0, 1])))


def semihard_good(dist, labels, alpha):
    d_ap, d_an = dist.unsqueeze(2), dist.unsqueeze(1)
    return (d_an > d_ap) & (d_an < d_ap + alpha) & good_mask(labels)


def semihard_swapped(dist, labels, alpha):
    d_ap, d_an = dist.unsqueeze(1), dist.unsqueeze(2)
    return (d_an > d_ap) & (d_an < d_ap + alpha) & good_mask(labels)


def semihard_no_margin(dist, labels, alpha):
    return (dist.unsqueeze(1) > dist.unsqueeze(2)) & good_mask(labels)


def semihard_no_valid_mask(dist, labels, alpha):
    d_ap, d_an = dist.unsqueeze(2), dist.unsqueeze(1)
    return (d_an > d_ap) & (d_an < d_ap + alpha)


def semihard_with_ties(dist, labels, alpha):
    d_ap, d_an = dist.unsqueeze(2), dist.unsqueeze(1)
    return (d_an >= d_ap) & (d_an <= d_ap + alpha) & good_mask(labels)


def semihard_tie_with_margin(dist, labels, alpha):
    d_ap, d_an = dist.unsqueeze(2), dist.unsqueeze(1)
    return (d_an > d_ap) & (d_an <= d_ap + alpha) & good_mask(labels)


@pytest.mark.parametrize("function", [semihard_good, reference.semihard_window_mask])
def test_semihard_check_passes_correct_code(function, capsys):
    assert check_semihard_mask(function).passed
    assert capsys.readouterr().out == "Well done: semihard_mask is correct on all 4 test cases.\n"


@pytest.mark.parametrize("function, mistake", [
    (semihard_swapped, "axes_swapped"),
    (semihard_no_margin, "no_margin"),
    (semihard_no_valid_mask, "not_a_valid_triplet"),
    (semihard_with_ties, "ties_kept"),
    (lambda dist, labels, alpha: semihard_good(dist, labels, alpha).float(), "not_boolean"),
    (semihard_tie_with_margin, None),  # a rarer slip: the answer and the expected one are shown
])
def test_semihard_mistakes_are_named(function, mistake, capsys):
    result = check_semihard_mask(function)
    assert not result.passed and result.mistake == mistake
    assert capsys.readouterr().out.strip() == result.message


@pytest.mark.parametrize("exercise", [VALID_TRIPLET_MASK, SEMIHARD_MASK])
def test_every_mistake_differs_from_the_answer_on_some_case(exercise):
    for mistake in exercise.mistakes:
        assert any(not exercise.matches(mistake.compute(*c.args), exercise.expected(*c.args)) for c in exercise.cases)


def test_the_reference_mask_keeps_only_the_strict_window():
    """Pair at distance 1, alpha 0.5: of the negatives at 0.5, 1, 1.25, 1.5, 2 only 1.25 is semi-hard."""
    dist, labels, alpha = SEMIHARD_MASK.cases[0].args
    assert reference.semihard_window_mask(dist, labels, alpha).nonzero().tolist() == [[0, 1, 4]]
