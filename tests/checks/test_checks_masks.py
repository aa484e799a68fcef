"""Tests of course_utils.checks.masks: each check passes correct code and explains real mistakes."""
import pytest
import torch

from course_utils.core import reference
from course_utils.checks.masks import SEMIHARD_MASK, check_semihard_mask, check_valid_triplet_mask


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


def axes_swapped(labels):
    return good_mask(labels).permute(0, 2, 1)


def as_numbers(labels):
    return good_mask(labels).float()


def no_negative(labels):
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    return (same & ~torch.eye(len(labels), dtype=torch.bool)).unsqueeze(2).expand(-1, -1, len(labels))


def two_d(labels):
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    return same & ~torch.eye(len(labels), dtype=torch.bool)


def not_done(labels):
    raise NotImplementedError()


def forgot_return(labels):
    good_mask(labels)


def bad_broadcast(labels):
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    return same & torch.ones(len(labels) + 1, dtype=torch.bool)


def unknown_error(labels):
    return {}[0]


@pytest.mark.parametrize("function", [good_mask, loop_mask])
def test_correct_masks_pass(function, capsys):
    result = check_valid_triplet_mask(function)
    assert result.passed and result
    assert "Well done" in capsys.readouterr().out


@pytest.mark.parametrize("function, mistake", [
    (with_self, "anchor_is_own_positive"),
    (axes_swapped, "axes_swapped"),
    (as_numbers, "not_boolean"),
    (no_negative, "no_negative_condition"),
    (two_d, "wrong_shape"),
    (not_done, "not_implemented"),
    (forgot_return, "returned_none"),
    (bad_broadcast, "size_mismatch"),
    (unknown_error, None),
])
def test_mistakes_are_named(function, mistake, capsys):
    result = check_valid_triplet_mask(function)
    assert not result.passed
    assert result.mistake == mistake
    assert capsys.readouterr().out.startswith(("Not yet", "valid_triplet_mask is not implemented"))


@pytest.mark.parametrize("order, named", [
    ((0, 2, 1), "a, n, p"), ((2, 0, 1), "n, a, p"), ((2, 1, 0), "n, a, p"), ((1, 2, 0), "a, n, p"), ((1, 0, 2), None),
])
def test_every_order_of_the_axes_is_named(order, named):
    """mask[a, p, n] is symmetric in a and p: [p, a, n] is right, and [n, p, a] is named [n, a, p]."""
    result = check_valid_triplet_mask(lambda labels: good_mask(labels).permute(*order))
    if named is None:
        assert result.passed
    else:
        assert result.mistake == "axes_swapped"
        assert f"yours is indexed [{named}], the exercise asks for [a, p, n]" in result.message


def test_a_wrong_mask_is_compared_entry_by_entry():
    """The counts of True entries agree (8 and 8); the message shows the entries that differ, explained."""
    message = check_valid_triplet_mask(axes_swapped).message
    assert "differs from the expected one at 16 of 64 entries: 8 True that should be False" in message
    assert ("mask[0, 2, 1] is True in yours, but (a=0, p=2, n=1) is no valid triplet: the positive shows person 1"
            in message)
    assert "mask[0, 1, 2] is False in yours, but (a=0, p=1, n=2) is a valid triplet" in message
    assert "8 True entries" not in message


def test_an_unknown_wrong_mask_still_shows_its_entries():
    def misses_person_zero(labels):
        return good_mask(labels) & (labels != 0).unsqueeze(1).unsqueeze(2)
    result = check_valid_triplet_mask(misses_person_zero)
    assert result.mistake is None
    assert "4 False that should be True" in result.message
    assert "a valid triplet: a and p are two pictures of person 0" in result.message


def test_the_numbers_hint_says_the_pattern_is_right():
    assert "only the dtype is wrong" in check_valid_triplet_mask(as_numbers).message


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


def semihard_no_lower_bound(dist, labels, alpha):
    return (dist.unsqueeze(1) < dist.unsqueeze(2) + alpha) & good_mask(labels)


def semihard_no_valid_mask(dist, labels, alpha):
    d_ap, d_an = dist.unsqueeze(2), dist.unsqueeze(1)
    return (d_an > d_ap) & (d_an < d_ap + alpha)


def semihard_with_ties(dist, labels, alpha):
    d_ap, d_an = dist.unsqueeze(2), dist.unsqueeze(1)
    return (d_an >= d_ap) & (d_an <= d_ap + alpha) & good_mask(labels)


def semihard_tie_with_margin(dist, labels, alpha):
    d_ap, d_an = dist.unsqueeze(2), dist.unsqueeze(1)
    return (d_an > d_ap) & (d_an <= d_ap + alpha) & good_mask(labels)


def semihard_as_floats(dist, labels, alpha):
    return semihard_good(dist, labels, alpha).float()


@pytest.mark.parametrize("function", [semihard_good, reference.semihard_window_mask])
def test_semihard_check_passes_correct_code(function, capsys):
    assert check_semihard_mask(function).passed
    assert "Well done: semihard_mask is correct on all 4 test cases." in capsys.readouterr().out


@pytest.mark.parametrize("function, mistake", [
    (semihard_swapped, "axes_swapped"),
    (semihard_no_margin, "no_margin"),
    (semihard_no_lower_bound, "hard_included"),
    (semihard_no_valid_mask, "not_a_valid_triplet"),
    (semihard_with_ties, "ties_kept"),
    (semihard_tie_with_margin, "tie_with_margin_kept"),
    (semihard_as_floats, "not_boolean"),
])
def test_semihard_mistakes_are_named(function, mistake, capsys):
    result = check_semihard_mask(function)
    assert not result.passed and result.mistake == mistake
    assert result.message in capsys.readouterr().out


def test_the_reference_mask_keeps_only_the_strict_window():
    """Pair at distance 1, alpha 0.5: of the negatives at 0.5, 1, 1.25, 1.5, 2 only 1.25 is semi-hard."""
    dist, labels, alpha = SEMIHARD_MASK.cases[0].args
    mask = reference.semihard_window_mask(dist, labels, alpha)
    assert mask.nonzero().tolist() == [[0, 1, 4]]
