"""Checks of notebooks 04 and 05, whose answers are (B, B, B) boolean masks: valid triplets, semi-hard triplets."""
from __future__ import annotations

import torch

from course_utils.checks.runner import Case, CheckResult, Exercise, Mistake, run_check
from course_utils.core import reference

_positive, _negative = reference.anchor_positive_mask, reference.anchor_negative_mask  # (B, B) bool
AXES_HINT = ("your mask has its axes in another order than mask[a, p, n]: the anchor-positive mask [a, p] gets "
             ".unsqueeze(2), shape (B, B, 1), the anchor-negative mask [a, n] .unsqueeze(1), shape (B, 1, B).")


# Notebook 04: the valid-triplet mask of a batch.

VALID_TRIPLET_MASK = Exercise(
    name="valid_triplet_mask",
    returns="a boolean tensor of shape (B, B, B) with mask[a, p, n] True for every valid triplet",
    expected=reference.valid_triplet_mask,
    cases=(
        Case("two persons with two pictures each, labels [0, 0, 1, 1]", (torch.tensor([0, 0, 1, 1]),)),
        Case("five pictures, ids not in order, labels [3, 1, 3, 2, 1]", (torch.tensor([3, 1, 3, 2, 1]),)),
        Case("six pictures, person 7 has a single picture, labels [5, 7, 5, 9, 9, 5]",
             (torch.tensor([5, 7, 5, 9, 9, 5]),)),
        Case("three pictures of three persons: no triplet at all, labels [0, 1, 2]", (torch.tensor([0, 1, 2]),)),
    ),
    mistakes=(
        Mistake("anchor_is_own_positive",
                lambda labels: (labels[:, None] == labels[None, :]).unsqueeze(2) & _negative(labels).unsqueeze(1),
                "a picture is counted as its own positive (a == p): add `& ~torch.eye(B, dtype=torch.bool)` to the "
                "positive mask."),
        Mistake("no_negative_condition",
                lambda labels: _positive(labels).unsqueeze(2).expand(-1, -1, len(labels)).clone(),
                "the negative is not checked: n must show another person, labels[a] != labels[n]."),
        # mask[a, p, n] = mask[p, a, n], so these two orders stand for the four wrong ones.
        *(Mistake("axes_swapped", lambda labels, order=order: reference.valid_triplet_mask(labels).permute(order),
                  AXES_HINT) for order in ((0, 2, 1), (2, 1, 0))),
    ),
    needs_gradient=False,
)


def check_valid_triplet_mask(function) -> CheckResult:
    """Check a learner's valid_triplet_mask(labels): (B,) -> (B, B, B) bool."""
    return run_check(function, VALID_TRIPLET_MASK)


# Notebook 05: FaceNet's semi-hard triplets as a mask.


def _line_distances(*positions: float) -> torch.Tensor:
    """(B, B) distances |x_i - x_j| between points on a line: exact for multiples of 1/4."""
    x = torch.tensor(positions)
    return (x.unsqueeze(1) - x.unsqueeze(0)).abs()


def _grid_distances(seed: int, n: int) -> torch.Tensor:
    """(n, n) squared distances between integer points in 2-D: whole numbers, with ties."""
    points = torch.randint(-3, 4, (n, 2), generator=torch.Generator().manual_seed(seed)).float()
    return reference.pairwise_distances(points).float()


def _window(dist, labels, alpha, swap=False, upper=True, valid=True, ties=False) -> torch.Tensor:
    """A semi-hard mask with one thing changed: what the mistakes return."""
    d_ap, d_an = dist.unsqueeze(2), dist.unsqueeze(1)  # (B, B, 1) and (B, 1, B)
    if swap:
        d_ap, d_an = d_an, d_ap
    mask = (d_an >= d_ap) if ties else (d_an > d_ap)
    if upper:
        mask = mask & ((d_an <= d_ap + alpha) if ties else (d_an < d_ap + alpha))
    return mask & reference.valid_triplet_mask(labels) if valid else mask


SEMIHARD_MASK = Exercise(
    name="semihard_mask",
    returns=("a boolean tensor of shape (B, B, B), mask[a, p, n] True when (a, p, n) is a valid triplet "
             "with d(a,p) < d(a,n) < d(a,p) + alpha"),
    expected=reference.semihard_window_mask,
    cases=(
        Case("pair at distance 1; negatives at 0.5, 1 (a tie), 1.25, 1.5 (the edge) and 2; alpha = 0.5",
             (_line_distances(0, 1, 0.5, -1, 1.25, -1.5, 2), torch.tensor([0, 0, 1, 2, 3, 4, 5]), 0.5)),
        Case("one negative closer than the positive, the other beyond the margin; alpha = 0.5",
             (_line_distances(0, 2, 1, -3), torch.tensor([0, 0, 1, 2]), 0.5)),
        Case("9 pictures of 3 persons at integer points, squared distances with ties, alpha = 2",
             (_grid_distances(5, 9), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2]), 2.0)),
        Case("3 pictures of one person: no negative, so no triplet",
             (_grid_distances(6, 3), torch.tensor([4, 4, 4]), 1.0)),
    ),
    mistakes=(
        Mistake("axes_swapped", lambda dist, labels, alpha: _window(dist, labels, alpha, swap=True),
                "d(a,p) and d(a,n) sit on the wrong axes: in mask[a, p, n], d(a,p) is dist.unsqueeze(2), shape "
                "(B, B, 1), and d(a,n) is dist.unsqueeze(1), shape (B, 1, B)."),
        Mistake("no_margin", lambda dist, labels, alpha: _window(dist, labels, alpha, upper=False),
                "negatives beyond the margin (loss 0 already) are kept: also require d(a,n) < d(a,p) + alpha."),
        Mistake("not_a_valid_triplet", lambda dist, labels, alpha: _window(dist, labels, alpha, valid=False),
                "(a, p, n) must also be a valid triplet: combine with notebook 04's valid-triplet mask."),
        Mistake("ties_kept", lambda dist, labels, alpha: _window(dist, labels, alpha, ties=True),
                "ties are kept, but both inequalities are strict (> and <): d(a,n) = d(a,p) is hard, and "
                "d(a,n) = d(a,p) + alpha has loss 0."),
    ),
    needs_gradient=False,
)


def check_semihard_mask(function) -> CheckResult:
    """Check a learner's semihard_mask(dist, labels, alpha): (B, B), (B,), float -> (B, B, B) bool."""
    return run_check(function, SEMIHARD_MASK)
