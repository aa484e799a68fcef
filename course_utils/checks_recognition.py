"""Check for notebook 07's exercise: write ``verify``.

The learner writes ``verify(embedding_a, embedding_b, threshold)`` returning
``(distance, accepted)``: the course's distance d = ||a - b||^2 between the two encodings
(as given, not re-normalised), and the decision d <= threshold, the same boundary rule as
``course_utils.recognition`` (a pair exactly at the threshold is accepted). It works for one
pair, (D,) and (D,) giving two 0-d tensors, and for n pairs, (n, D) and (n, D) giving two
(n,) tensors.

The answer is a pair of tensors, which the framework's `run_check` does not compare, so this
module adds `run_verify_check`: the same steps (run every case, explain errors, recognise
known mistakes with `find_mistake`), comparing the distances with float32 tolerance and the
decisions exactly.
"""
from __future__ import annotations

import torch

from . import reference
from .checks import Case, CheckResult, ErrorHint, Exercise, Mistake, _describe_args, _fail, _matches, _show
from .checks import collect_answers, find_mistake


def _distances(a: torch.Tensor, b: torch.Tensor, metric: str = "squared_euclidean") -> torch.Tensor:
    """d(a, b) for one pair (0-d answer) or row by row for n pairs ((n,) answer), in float64."""
    if a.dim() == 1:
        return reference.distance(a, b, metric)
    return torch.stack([reference.distance(x, y, metric) for x, y in zip(a, b)])


def _verify_by_definition(a, b, threshold, metric="squared_euclidean", accept=lambda d, t: d <= t, unit=False):
    """(distance, accepted) from the definition; the keyword arguments reproduce the mistakes."""
    if unit:
        a, b = (torch.nn.functional.normalize(x.double(), dim=-1) for x in (a, b))
    distance = _distances(a, b, metric)
    return distance, accept(distance, torch.tensor(threshold, dtype=torch.float64))


def _answer_matches(answer, target) -> bool:
    """A (distance, accepted) pair: distances equal up to float32 round-off, decisions exactly."""
    if not isinstance(answer, tuple) or len(answer) != 2:
        return False
    distance, accepted = answer
    accepted = torch.as_tensor(accepted) if isinstance(accepted, bool) else accepted
    return (
        _matches(distance, target[0])
        and isinstance(accepted, torch.Tensor)
        and accepted.dtype == torch.bool
        and accepted.shape == target[1].shape
        and bool(torch.equal(accepted.cpu(), target[1]))
    )


def _grid(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


VERIFY = Exercise(
    name="verify",
    returns="a pair (distance, accepted): two 0-d tensors for one pair of encodings, two (n,) tensors for n pairs",
    expected=_verify_by_definition,
    cases=(
        Case("one pair of unit-length encodings in 3-D, threshold 0.5",
             (_grid(0.6, 0.8, 0.0), _grid(0.8, 0.6, 0.0), 0.5)),
        Case("one pair exactly at the threshold: d = 1.25, threshold 1.25",
             (_grid(0.5, 1.5), _grid(1.0, 0.5), 1.25)),
        Case("four pairs at once in 2-D, unnormalised encodings, threshold 2.0",
             (_grid([0.0, 0.0], [2.0, 1.0], [1.0, 1.0], [-1.0, 3.0]),
              _grid([1.0, 0.0], [0.5, 1.0], [3.0, 3.0], [-1.0, 3.5]), 2.0)),
        Case("three pairs, one at the threshold, threshold 0.5",
             (_grid([0.5, 0.0, 0.5], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]),
              _grid([0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 2.0, 0.25]), 0.5)),
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
    needs_gradient=False,
)


def _show_answer(answer) -> str:
    if isinstance(answer, tuple) and len(answer) == 2:
        accepted = answer[1]
        shown = accepted.tolist() if isinstance(accepted, torch.Tensor) else accepted
        return f"distance {_show(answer[0])}, accepted {shown}"
    return _show(answer)


def _wrong_form(case: Case, answer) -> CheckResult | None:
    """A message when the answer is not a (distance, accepted) pair of tensors; None when it is."""
    where = f"on the test case \"{case.description}\""
    if answer is None:
        return _fail(VERIFY, f"returned None {where}.",
                     "  Hint: did you forget the `return distance, accepted` at the end?", "returned_none")
    if not isinstance(answer, tuple) or len(answer) != 2:
        return _fail(VERIFY, f"returned a {type(answer).__name__} {where}, not a pair.",
                     f"  Expected {VERIFY.returns}.\n  Hint: end with `return distance, accepted`.", "not_a_pair")
    distance, accepted = answer
    if not isinstance(distance, torch.Tensor) or not distance.is_floating_point():
        return _fail(VERIFY, f"returned a distance that is not a floating-point tensor {where}.",
                     "  Hint: keep the distance a tensor (no .item() or float()), so n pairs give n distances.",
                     "distance_not_a_tensor")
    if not isinstance(accepted, (bool, torch.Tensor)) or (
            isinstance(accepted, torch.Tensor) and accepted.dtype != torch.bool):  # fmt: skip
        return _fail(VERIFY, f"returned a decision that is not True/False {where}.",
                     "  Hint: a comparison such as distance <= threshold gives a bool tensor; don't convert it "
                     "to numbers.", "decision_not_boolean")
    return None


def run_verify_check(function) -> CheckResult:
    """Run a learner's verify on every case; print and return the verdict.

    Args:
        function: the learner's verify(embedding_a, embedding_b, threshold).
    Returns:
        CheckResult; true when every case gave the expected distances and decisions.
    """
    if not callable(function):
        raise TypeError(f"pass the function itself, for example check_verify(verify) without parentheses after "
                        f"verify; got a {type(function).__name__}.")  # fmt: skip
    result = _run_verify_cases(function)
    print(result.message)
    return result


def _run_verify_cases(function) -> CheckResult:
    answers = collect_answers(function, VERIFY, requires_grad=False)
    if isinstance(answers, CheckResult):
        return answers
    for number, (case, answer) in enumerate(zip(VERIFY.cases, answers)):
        wrong = _wrong_form(case, answer)
        if wrong is not None:
            return wrong
        expected = VERIFY.expected(*case.args)
        if _answer_matches(answer, expected):
            continue
        found = find_mistake(VERIFY, number, answers, _answer_matches)
        got = (f"  Test case \"{case.description}\" (arguments: {_describe_args(case.args)}):\n"
               f"    your answer: {_show_answer(answer)}\n    expected:    {_show_answer(expected)}")
        if found is not None:
            return _fail(VERIFY, "gives a wrong answer.", f"{got}\n  Hint: {found.hint}", found.name)
        return _fail(VERIFY, "gives a wrong answer.",
                     f"{got}\n  Hint: compute d = sum of (a - b) ** 2 over the last axis by hand for this case, "
                     "then accept when d <= threshold.", None)
    count = len(VERIFY.cases)
    return CheckResult(VERIFY.name, True, f"Well done: verify is correct on all {count} test cases.")


def check_verify(function) -> CheckResult:
    """Check a learner's verify(embedding_a, embedding_b, threshold) -> (distance, accepted)."""
    return run_verify_check(function)
