"""Checks of notebook 07's exercises, whose answers are tuples: verify -> (distance, accepted) and
error_rates -> (far, frr, eer). Numbers are compared up to float32 round-off, decisions exactly."""
from __future__ import annotations

from dataclasses import replace
from functools import partial

import torch

from course_utils.checks.runner import (Case, CheckResult, ErrorHint, Exercise, Mistake, fail, grid, judge,
                                        masks_match, returned_none, row_distances, run_check, show_value,
                                        tensors_match)
from course_utils.core import reference


def _verify_by_definition(a, b, threshold, metric="squared_euclidean", accept=lambda d, t: d <= t, unit=False):
    """(distance, accepted) by the definition; the keyword arguments reproduce the mistakes."""
    if unit:
        a, b = (torch.nn.functional.normalize(x.double(), dim=-1) for x in (a, b))
    distance = row_distances(a, b, metric)
    return distance, accept(distance, torch.tensor(threshold, dtype=torch.float64))


def _as_tensor(value):
    """A Python bool or number as a 0-d tensor (numbers in float64)."""
    if isinstance(value, bool):
        return torch.tensor(value)
    return torch.tensor(float(value), dtype=torch.float64) if isinstance(value, (int, float)) else value


def _tuple_matches(answer, target: tuple) -> bool:
    return (isinstance(answer, tuple) and len(answer) == len(target)
            and all((masks_match if expected.dtype == torch.bool else tensors_match)(_as_tensor(part), expected)
                    for part, expected in zip(answer, target)))


def _tuple_answers(parts: tuple[str, ...], kind: str, rules: tuple) -> dict:
    """The Exercise fields for an answer that is a tuple of `parts` (a "pair", a "triple"); each rule is
    (test of the parts, what the answer returned when the test fails, hint, mistake name)."""
    def shown(value) -> str:
        if not (isinstance(value, tuple) and len(value) == len(parts)):
            return show_value(value)
        return ", ".join(f"{name} {show_value(_as_tensor(part))}" for name, part in zip(parts, value))

    def wrong_form(exercise: Exercise, case: Case, answer, expected) -> CheckResult | None:
        returned, where = f"`return {', '.join(parts)}`", f"on the test case \"{case.description}\""
        if answer is None:
            return returned_none(exercise, case, returned)
        if not isinstance(answer, tuple) or len(answer) != len(parts):
            return fail(exercise, f"returned a {type(answer).__name__} {where}, not a {kind}.",
                        f"  Expected {exercise.returns}.\n  Hint: end with {returned}.", f"not_a_{kind}")
        for test, what, hint, name in rules:
            if not test(*answer):
                return fail(exercise, f"returned {what} {where}.", f"  Hint: {hint}", name)
        return None

    def show(answer, expected, args=()) -> str:
        return f"    your answer: {shown(answer)}\n    expected:    {shown(expected)}"

    return dict(needs_gradient=False, matches=_tuple_matches, wrong_form=wrong_form, show=show)


VERIFY = Exercise(
    name="verify",
    returns="a pair (distance, accepted): two 0-d tensors for one pair of encodings, two (n,) tensors for n pairs",
    expected=_verify_by_definition,
    cases=(
        Case("one pair of unit-length encodings in 3-D, threshold 0.5",
             (grid(0.6, 0.8, 0.0), grid(0.8, 0.6, 0.0), 0.5)),
        Case("one pair exactly at the threshold: d = 1.25, threshold 1.25",
             (grid(0.5, 1.5), grid(1.0, 0.5), 1.25)),
        Case("four pairs at once in 2-D, unnormalised encodings, threshold 2.0",
             (grid([0.0, 0.0], [2.0, 1.0], [1.0, 1.0], [-1.0, 3.0]),
              grid([1.0, 0.0], [0.5, 1.0], [3.0, 3.0], [-1.0, 3.5]), 2.0)),
        Case("three pairs, one at the threshold, threshold 0.5",
             (grid([0.5, 0.0, 0.5], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]),
              grid([0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 2.0, 0.25]), 0.5)),
    ),
    mistakes=(
        Mistake("strict_comparison",
                lambda a, b, t: _verify_by_definition(a, b, t, accept=lambda d, t: d < t),
                "a pair exactly at the threshold must be accepted: the rule is d <= threshold, not d < threshold."),
        Mistake("comparison_reversed",
                lambda a, b, t: _verify_by_definition(a, b, t, accept=lambda d, t: d > t),
                "the comparison is the wrong way round: d is a distance, small for the same person, so "
                "accept when d <= threshold."),
        Mistake("forgot_square",
                lambda a, b, t: _verify_by_definition(a, b, t, metric="euclidean"),
                "you used the plain Euclidean distance ||a - b||. The course's d, and the threshold, are on "
                "the squared scale: ((a - b) ** 2).sum(dim=-1), without a square root."),
        Mistake("cosine_distance",
                lambda a, b, t: _verify_by_definition(a, b, t, metric="cosine"),
                "you used the cosine distance. The course's d is the squared Euclidean distance "
                "((a - b) ** 2).sum(dim=-1)."),
        Mistake("normalised_inputs",
                lambda a, b, t: _verify_by_definition(a, b, t, unit=True),
                "you scaled the encodings to length 1 first. Compare them as given: the network already "
                "normalises its output, and verify must not change what it is handed."),
    ),
    error_hints=(
        ErrorHint("builtin_compare", "Boolean value of Tensor with more than one value is ambiguous",
                  "an `if` or Python's and/or works on one number only. For n pairs compare the tensors "
                  "directly: accepted = distance <= threshold."),
        ErrorHint("summed_wrong_axis", "Dimension out of range",
                  "one pair is 1-D, so there is no dim=1. Sum over the last axis, dim=-1, which works for one "
                  "pair and for n pairs."),
    ),
    **_tuple_answers(("distance", "accepted"), "pair", (
        (lambda distance, accepted: isinstance(distance, torch.Tensor) and distance.is_floating_point(),
         "a distance that is not a floating-point tensor",
         "keep the distance a tensor (no .item() or float()), so n pairs give n distances.", "distance_not_a_tensor"),
        (lambda distance, accepted: isinstance(accepted, bool) or getattr(accepted, "dtype", None) == torch.bool,
         "a decision that is not True/False",
         "a comparison such as distance <= threshold gives a bool tensor; don't convert it to numbers.",
         "decision_not_boolean"))),
    fallback_hint="compute d = sum of (a - b) ** 2 over the last axis by hand for this case, then accept when "
                  "d <= threshold.",
)


def check_verify(function) -> CheckResult:
    """Check a learner's verify(embedding_a, embedding_b, threshold) -> (distance, accepted)."""
    return run_check(function, VERIFY)


# error_rates: the cases have S != N != T (so a slip in a denominator shows), distances exactly at
# thresholds, and a unique closest threshold where the two rates differ.


def _error_rates(same, different, thresholds, accept=torch.le, rejected_same=True, over="own", pick="closest",
                 value="mean"):
    """(far, frr, eer) in float64 with the slips the keyword arguments name: what the mistakes return."""
    same, different, t = same.double(), different.double(), thresholds.double()[:, None]  # t: (T, 1)
    accepted_same = accept(same, t).sum(dim=1)  # (T,)
    wrong_same = len(same) - accepted_same if rejected_same else accepted_same
    far_over, frr_over = {"own": (len(different), len(same)), "swapped": (len(same), len(different)),
                          "all": (len(same) + len(different),) * 2, "none": (1, 1)}[over]
    far, frr = accept(different, t).sum(dim=1) / far_over, wrong_same / frr_over  # (T,) each
    gap = {"closest": (far - frr).abs(), "farthest": -(far - frr).abs(), "lowest_total": far + frr}[pick]
    best = int(gap.argmin())
    return far, frr, {"mean": (far[best] + frr[best]) / 2, "far": far[best], "frr": frr[best]}[value]


def _swapped(same, different, thresholds):
    far, frr, eer = reference.error_rates(same, different, thresholds)
    return frr, far, eer


LIBRARY_CASE_SIZES = (40, 300)


def _library_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from course_utils.evaluation.recognition import roc_curve

    generator = torch.Generator().manual_seed(9)  # a seed whose closest threshold is clear (no near-tie)
    same = torch.rand(LIBRARY_CASE_SIZES[0], generator=generator) * 1.2
    different = 0.6 + torch.rand(LIBRARY_CASE_SIZES[1], generator=generator) * 2.0
    return same, different, roc_curve(same, different).thresholds


def _library_answer(same, different, thresholds) -> tuple:
    from course_utils.evaluation.recognition import equal_error_rate, roc_curve

    curve = roc_curve(same, different)
    return (curve.false_accept_rate, 1 - curve.true_accept_rate,
            torch.tensor(equal_error_rate(same, different).rate, dtype=torch.float64))


def _agrees_with_library(function, exercise: Exercise) -> CheckResult | None:
    """None when the answer on random distances agrees with the library's roc_curve and equal_error_rate."""
    case = Case(f"{sum(LIBRARY_CASE_SIZES)} random distances at the library's ROC thresholds", _library_case())
    verdict = judge(function, replace(
        exercise, cases=(case,), expected=_library_answer, mistakes=(), after_cases=(),
        fallback_hint="it is right on the small cases but differs from the library's roc_curve and "
                      "equal_error_rate here. Compare the distances as given (no rounding, no .half()), and make "
                      "sure nothing depends on the small sizes of the test cases."))
    return None if verdict.passed else verdict


_EER_ONE_RATE_HINT = ("your two rates are right, but the equal error rate is the MEAN of the two at the threshold "
                      "where they are closest: (far[best] + frr[best]) / 2 with best = (far - frr).abs().argmin(). "
                      "You returned only one of them.")

ERROR_RATES = Exercise(
    name="error_rates",
    returns="a triple (far, frr, eer): two (T,) tensors of rates, one value per threshold, and the equal error "
            "rate as a 0-d tensor",
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
    ),
    mistakes=(
        Mistake("strict_comparison", partial(_error_rates, accept=torch.lt),
                "a pair exactly at the threshold counts as accepted: a different-person pair with d <= threshold "
                "is a false accept, and a same-person pair is rejected only when d > threshold. You used < "
                "(or >=) at the threshold."),
        Mistake("rates_swapped", _swapped,
                "your first two results are the other way round. The false-accept rate comes from the "
                "different-person pairs (accepted although they are different people), the false-reject rate "
                "from the same-person pairs (rejected although they are the same person). Return far, frr in "
                "that order."),
        Mistake("counts_not_rates", partial(_error_rates, over="none"),
                "these are counts of false accepts and false rejects, not rates. Divide each count by the number "
                "of pairs of its kind (len(different) for false accepts, len(same) for false rejects), or take "
                ".float().mean(dim=1) of the comparisons."),
        Mistake("true_accept_rate", partial(_error_rates, rejected_same=False),
                "your second result is the fraction of same-person pairs ACCEPTED (the true-accept rate). The "
                "false-reject rate is the fraction rejected: same-person distances > threshold."),
        Mistake("denominators_swapped", partial(_error_rates, over="swapped"),
                "you divided the false accepts by the number of same-person pairs and the false rejects by the "
                "number of different-person pairs. Each count goes over the pairs of its own kind."),
        Mistake("all_pairs_denominator", partial(_error_rates, over="all"),
                "you divided by all pairs together. Divide the false accepts by the number of different-person "
                "pairs and the false rejects by the number of same-person pairs."),
        Mistake("eer_is_far", partial(_error_rates, value="far"), _EER_ONE_RATE_HINT),
        Mistake("eer_is_frr", partial(_error_rates, value="frr"), _EER_ONE_RATE_HINT),
        Mistake("lowest_total_error", partial(_error_rates, pick="lowest_total"),
                "you read the equal error rate where the total error far + frr is smallest. It is read where the "
                "two rates are closest, best = (far - frr).abs().argmin(), as their mean there."),
        Mistake("largest_gap", partial(_error_rates, pick="farthest"),
                "you read the equal error rate where the two rates differ MOST (argmax). Use the threshold where "
                "they are closest: (far - frr).abs().argmin()."),
    ),
    error_hints=(
        ErrorHint("broadcast_missing", "must match the size of tensor",
                  "compare every distance with every threshold: different[None, :] <= thresholds[:, None] is a "
                  "(T, N) table with one row per threshold; average each row with .float().mean(dim=1)."),
        ErrorHint("builtin_compare", "Boolean value of Tensor with more than one value is ambiguous",
                  "an `if` or Python's and/or works on one number only. Compare whole tensors instead and count "
                  "the True values."),
        ErrorHint("mean_of_booleans", "could not infer output dtype",
                  "the mean of True/False values needs numbers first: (different[None, :] <= thresholds[:, None])"
                  ".float().mean(dim=1)."),
    ),
    **_tuple_answers(("far", "frr", "eer"), "triple", (
        (lambda far, frr, eer: isinstance(far, torch.Tensor) and isinstance(frr, torch.Tensor),
         "rates that are not tensors",
         "keep far and frr tensors with one value per threshold (no lists, no .item()).", "rates_not_tensors"),
        (lambda far, frr, eer: isinstance(_as_tensor(eer), torch.Tensor) and _as_tensor(eer).numel() == 1,
         "an equal error rate that is not one number",
         "the equal error rate is one value: the mean of far and frr at one threshold.", "eer_not_one_number"))),
    fallback_hint="for one threshold, count by hand the different-person distances <= threshold and the "
                  "same-person distances > threshold, and divide each by its number of pairs.",
    after_cases=(_agrees_with_library,),
    passed="is correct on all {cases} test cases and agrees with the library's roc_curve and equal_error_rate on "
           f"{sum(LIBRARY_CASE_SIZES)} random distances.",
)


def check_error_rates(function) -> CheckResult:
    """Check a learner's error_rates(same, different, thresholds) -> (far (T,), frr (T,), eer)."""
    return run_check(function, ERROR_RATES)
