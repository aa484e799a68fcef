"""Checks of notebook 07's exercises: verify -> (distance, accepted) and error_rates -> (far, frr, eer)."""
from __future__ import annotations

from functools import partial

import torch

from course_utils.checks.runner import Case, CheckResult, Exercise, Mistake, grid, run_check, squared_distances
from course_utils.core import reference
from course_utils.evaluation.recognition import roc_curve


def _verify(a, b, threshold, accept=torch.le, root=False) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, accepted) by the definition, d <= threshold; the keyword arguments reproduce the mistakes."""
    distance = squared_distances(a, b).sqrt() if root else squared_distances(a, b)
    return distance, accept(distance, torch.tensor(threshold, dtype=torch.float64))


VERIFY = Exercise(
    name="verify",
    returns="a pair (distance, accepted): two 0-d tensors for one pair of encodings, two (n,) tensors for n pairs",
    expected=_verify,
    cases=(
        Case("one pair of unit vectors in 3-D, threshold 0.5", (grid(0.6, 0.8, 0.0), grid(0.8, 0.6, 0.0), 0.5)),
        Case("one pair exactly at the threshold: d = 1.25, threshold 1.25", (grid(0.5, 1.5), grid(1.0, 0.5), 1.25)),
        Case("four pairs at once in 2-D, unnormalised encodings, threshold 2.0",
             (grid([0.0, 0.0], [2.0, 1.0], [1.0, 1.0], [-1.0, 3.0]),
              grid([1.0, 0.0], [0.5, 1.0], [3.0, 3.0], [-1.0, 3.5]), 2.0)),
        Case("three pairs, one at the threshold, threshold 0.5",
             (grid([0.5, 0.0, 0.5], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]),
              grid([0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 2.0, 0.25]), 0.5)),
    ),
    mistakes=(
        Mistake("strict_comparison", partial(_verify, accept=torch.lt),
                "a pair exactly at the threshold must be accepted: the rule is d <= threshold, not d < threshold."),
        Mistake("comparison_reversed", partial(_verify, accept=torch.gt),
                "the comparison is the wrong way round: d is small for the same person, so accept d <= threshold."),
        Mistake("forgot_square", partial(_verify, root=True),
                "you used the plain distance ||a - b||; d and the threshold are squared: ((a - b) ** 2).sum(dim=-1)."),
    ),
    needs_gradient=False,
)


def check_verify(function) -> CheckResult:
    """Check a learner's verify(embedding_a, embedding_b, threshold) -> (distance, accepted)."""
    return run_check(function, VERIFY)


# error_rates: S != N != T (a slip in a denominator shows), distances at thresholds, a unique closest threshold.


def _rates(same, different, thresholds, accept=torch.le, rejected=True, per_pair=True, swap=False) -> tuple:
    """(far, frr, eer) in float64 with the slips the keyword arguments name: what the mistakes return."""
    same, different, t = same.double(), different.double(), thresholds.double()[:, None]  # t: (T, 1)
    far = accept(different, t).sum(dim=1) / (len(different) if per_pair else 1)  # (T,)
    wrong_same = ~accept(same, t) if rejected else accept(same, t)
    frr = wrong_same.sum(dim=1) / (len(same) if per_pair else 1)  # (T,)
    best = int((far - frr).abs().argmin())
    return (frr, far, (far[best] + frr[best]) / 2) if swap else (far, frr, (far[best] + frr[best]) / 2)


def _library_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """340 random distances at the library's ROC thresholds, where reference.error_rates agrees with the library."""
    generator = torch.Generator().manual_seed(9)  # a seed whose closest threshold is clear (no near-tie)
    same = torch.rand(40, generator=generator) * 1.2
    different = 0.6 + torch.rand(300, generator=generator) * 2.0
    return same, different, roc_curve(same, different).thresholds


ERROR_RATES = Exercise(
    name="error_rates",
    returns="a triple (far, frr, eer): two (T,) tensors of rates, one per threshold, and a 0-d equal error rate",
    expected=reference.error_rates,
    cases=(
        Case("3 same-person and 5 different-person distances, 4 thresholds, two distances exactly at a threshold",
             (grid(0.25, 0.5, 1.5), grid(0.5, 1.0, 1.75, 2.0, 3.0), grid(0.0, 0.5, 1.0, 2.0))),
        Case("4 same-person and 2 different-person distances, 3 thresholds",
             (grid(0.25, 0.75, 1.0, 2.5), grid(0.75, 3.0), grid(0.5, 1.0, 2.75))),
        Case("6 same-person and 9 different-person distances, 5 thresholds",
             (grid(0.125, 0.25, 0.25, 0.5, 0.875, 1.25),
              grid(0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.25, 3.0, 3.5), grid(0.25, 0.5, 0.75, 1.0, 1.5))),
        Case("one threshold only, 2 same-person and 3 different-person distances",
             (grid(0.5, 1.25), grid(1.0, 2.0, 4.0), grid(1.0))),
        Case("340 random distances at the library's ROC thresholds", _library_case()),
    ),
    mistakes=(
        Mistake("strict_comparison", partial(_rates, accept=torch.lt),
                "a pair exactly at the threshold counts as accepted: a different-person pair with d <= threshold "
                "is a false accept, and a same-person pair is rejected only when d > threshold."),
        Mistake("rates_swapped", partial(_rates, swap=True),
                "far and frr are the other way round. False accepts come from the different-person pairs, false "
                "rejects from the same-person pairs: return far, frr in that order."),
        Mistake("counts_not_rates", partial(_rates, per_pair=False),
                "these are counts, not rates. Divide each count by the number of pairs of its kind, or take "
                ".float().mean(dim=1) of the comparisons."),
        Mistake("true_accept_rate", partial(_rates, rejected=False),
                "your frr is the fraction of same-person pairs ACCEPTED (the true-accept rate). The false-reject "
                "rate is the fraction rejected: same-person distances > threshold."),
    ),
    needs_gradient=False,
    passed="is correct on all 4 test cases and agrees with the library's roc_curve and equal_error_rate on 340 "
           "random distances.",
)


def check_error_rates(function) -> CheckResult:
    """Check a learner's error_rates(same, different, thresholds) -> (far (T,), frr (T,), eer)."""
    return run_check(function, ERROR_RATES)
