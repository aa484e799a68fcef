"""Checks for the exercises of notebooks 04 and 05: building triplets and choosing them.

They use the framework of `course_utils.checks` (``Case``, ``Mistake``, ``Exercise``,
``CheckResult``). Notebook 04's exercise returns a boolean mask, which the framework's
`run_check` would refuse as "not floating-point", so this module adds `run_mask_check`:
the same steps (run every case, explain errors, recognise known mistakes), but an answer
matches when it is a boolean tensor with exactly the expected entries.
Notebook 05's exercise (batch-hard selection with masks) returns one loss per anchor, a float
tensor: `run_check` serves it.
"""
from __future__ import annotations

from itertools import permutations

import torch

from . import reference
from .checks import (
    Case,
    CheckResult,
    ErrorHint,
    Exercise,
    Mistake,
    _describe_args,
    _fail,
    collect_answers,
    find_mistake,
    run_check,
)

# ---------------------------------------------------------------------------
# Boolean-mask answers.


def _show_mask(mask: torch.Tensor) -> str:
    """How many entries are True, and the shape: a B^3 mask is too big to print."""
    return f"{int(mask.sum())} True entries (shape {tuple(mask.shape)}, dtype {mask.dtype})"


def _mask_matches(answer, target: torch.Tensor) -> bool:
    return (
        isinstance(answer, torch.Tensor)
        and answer.dtype == torch.bool
        and answer.shape == target.shape
        and bool(torch.equal(answer.cpu(), target))
    )


def _wrong_mask_type(exercise: Exercise, case: Case, answer, expected: torch.Tensor) -> CheckResult | None:
    """A message when the answer is not a boolean tensor; None when it is."""
    where = f"on the test case \"{case.description}\""
    if answer is None:
        return _fail(exercise, f"returned None {where}.",
                     "  Hint: did you forget the `return` statement at the end of the function?", "returned_none")
    if not isinstance(answer, torch.Tensor):
        return _fail(exercise, f"returned a {type(answer).__name__} {where}, not a torch tensor.",
                     f"  Expected {exercise.returns}.\n  Hint: build the mask with tensor comparisons "
                     "(==, !=) and combine them with & (no Python loops or lists).", "not_a_tensor")
    if answer.dtype != torch.bool:
        same_entries = answer.shape == expected.shape and bool(torch.equal(answer.cpu() != 0, expected))
        note = " Its True/False pattern is right; only the dtype is wrong." if same_entries else ""
        return _fail(exercise, f"returned a tensor of dtype {answer.dtype} {where}.",
                     f"  Expected {exercise.returns}.{note}\n  Hint: combine comparisons with & (and), | (or) "
                     "and ~ (not); multiplying them or calling .float() or .long() turns the mask into numbers.",
                     "not_boolean")
    return None


def _differing_entries(answer: torch.Tensor, expected: torch.Tensor, explain_entry, args: tuple,
                       shown: int = 2) -> str:
    """The entries where two masks of the same shape differ: how many, and the first few, each explained."""
    differs = answer.cpu() != expected
    extra = (differs & answer.cpu()).nonzero().tolist()
    missing = (differs & expected).nonzero().tolist()
    lines = [f"    your mask differs from the expected one at {int(differs.sum())} of {differs.numel()} entries: "
             f"{len(extra)} True that should be False, {len(missing)} False that should be True."]
    for index in extra[:shown]:
        lines.append(f"      mask[{', '.join(map(str, index))}] is True in yours, but {explain_entry(*args, *index)}")
    for index in missing[:shown]:
        lines.append(f"      mask[{', '.join(map(str, index))}] is False in yours, but {explain_entry(*args, *index)}")
    return "\n".join(lines)


def _axes_permuted(answer: torch.Tensor, expected: torch.Tensor, axis_names: tuple[str, ...]) -> str | None:
    """The order of axes the answer uses when it is the expected mask with its axes permuted, else None."""
    if answer.dim() != len(axis_names) or sorted(answer.shape) != sorted(expected.shape):
        return None
    for order in permutations(range(answer.dim())):
        if order != tuple(range(answer.dim())) and _mask_matches(answer, expected.permute(order)):
            return ", ".join(axis_names[axis] for axis in order)
    return None


def _diagnose_wrong_mask(exercise: Exercise, number: int, answers: list, expected: torch.Tensor,
                         explain_entry=None, axis_names: tuple[str, ...] | None = None) -> CheckResult:
    case, answer = exercise.cases[number], answers[number]
    found = find_mistake(exercise, number, answers, _mask_matches)
    got = (f"  Test case \"{case.description}\" (arguments: {_describe_args(case.args)}):\n"
           f"    your answer: {_show_mask(answer)}\n    expected:    {_show_mask(expected)}")
    if explain_entry is not None and answer.shape == expected.shape:
        got = (f"  Test case \"{case.description}\" (arguments: {_describe_args(case.args)}):\n"
               f"{_differing_entries(answer, expected, explain_entry, case.args)}")
    permuted = None if axis_names is None else _axes_permuted(answer, expected, axis_names)
    if permuted is not None:
        asked = ", ".join(axis_names)
        return _fail(exercise, f"gives the right mask with its axes swapped: yours is indexed [{permuted}], "
                     f"the exercise asks for [{asked}].",
                     f"{got}\n  Hint: {exercise.name}(labels)[{asked}] must be True for the valid triplet ({asked}). "
                     "Put each (B, B) mask on the axes of its two pictures: the anchor-positive mask is indexed "
                     "[a, p], so it gets .unsqueeze(2), shape (B, B, 1); the anchor-negative mask is indexed "
                     "[a, n], so it gets .unsqueeze(1), shape (B, 1, B).", "axes_swapped")
    if found is not None:
        return _fail(exercise, "gives a wrong mask.", f"{got}\n  Hint: {found.hint}", found.name)
    if answer.shape != expected.shape:
        return _fail(exercise, f"returns shape {tuple(answer.shape)} where {tuple(expected.shape)} is expected.",
                     f"{got}\n  Hint: it should return {exercise.returns}. Give the (B, B) pair masks the "
                     "missing axis with .unsqueeze before combining them.", "wrong_shape")
    return _fail(exercise, "gives a wrong mask.",
                 f"{got}\n  Hint: pick one entry [a, p, n] where your mask differs and decide by hand whether "
                 "(a, p, n) is a valid triplet.", None)


def run_mask_check(function, exercise: Exercise, explain_entry=None,
                   axis_names: tuple[str, ...] | None = None) -> CheckResult:
    """Run a learner's function that returns a boolean mask on every case; print and return the verdict.

    Args:
        function: the learner's function.
        exercise: what to check it against; ``expected`` and each mistake's ``compute``
            return boolean CPU tensors.
        explain_entry: optional; called as explain_entry(*case arguments, *index) it says in words
            what the entry at that index should be and why. With it, a wrong mask of the right
            shape is compared entry by entry: how many entries differ, and the first ones explained.
        axis_names: optional names of the mask's axes, for example ("a", "p", "n"); with them, an
            answer that is the expected mask with its axes in another order is named "axes_swapped".
    Returns:
        CheckResult; true when every case gave exactly the expected mask.
    """
    if not callable(function):
        raise TypeError(
            f"pass the function itself, for example check_{exercise.name}({exercise.name}) without "
            f"parentheses after {exercise.name}; got a {type(function).__name__}."
        )
    result = _run_mask_cases(function, exercise, explain_entry, axis_names)
    print(result.message)
    return result


def _run_mask_cases(function, exercise: Exercise, explain_entry=None, axis_names=None) -> CheckResult:
    answers = collect_answers(function, exercise, requires_grad=False)
    if isinstance(answers, CheckResult):
        return answers
    for number, (case, answer) in enumerate(zip(exercise.cases, answers)):
        expected = exercise.expected(*case.args)
        wrong = _wrong_mask_type(exercise, case, answer, expected)
        if wrong is not None:
            return wrong
        if not _mask_matches(answer, expected):
            return _diagnose_wrong_mask(exercise, number, answers, expected, explain_entry, axis_names)
    count = len(exercise.cases)
    return CheckResult(exercise.name, True, f"Well done: {exercise.name} is correct on all {count} test cases.")


# ---------------------------------------------------------------------------
# Notebook 04: the valid-triplet mask of a batch.


def _same(labels: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: labels[i] == labels[j], including i == j."""
    return labels.unsqueeze(1) == labels.unsqueeze(0)


def _not_self(labels: torch.Tensor) -> torch.Tensor:
    return ~torch.eye(len(labels), dtype=torch.bool)


def _explain_triplet(labels: torch.Tensor, a: int, p: int, n: int) -> str:
    """Whether (a, p, n) is a valid triplet of these labels, and why, in words."""
    person = labels.tolist()
    if a == p:
        return f"(a={a}, p={p}, n={n}) is no valid triplet: the positive is the anchor itself (a == p)."
    if person[p] != person[a]:
        return (f"(a={a}, p={p}, n={n}) is no valid triplet: the positive shows person {person[p]}, "
                f"the anchor person {person[a]}.")
    if person[n] == person[a]:
        return f"(a={a}, p={p}, n={n}) is no valid triplet: the negative shows the anchor's own person {person[a]}."
    return (f"(a={a}, p={p}, n={n}) is a valid triplet: a and p are two pictures of person {person[a]}, "
            f"n shows person {person[n]}.")


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
                lambda labels: _same(labels).unsqueeze(2) & ~_same(labels).unsqueeze(1),
                "a picture is counted as its own positive (a == p). The positive must be a different "
                "picture of the same person: add `& ~torch.eye(B, dtype=torch.bool)` to the positive mask."),
        Mistake("no_negative_condition",
                lambda labels: (_same(labels) & _not_self(labels)).unsqueeze(2).expand(-1, -1, len(labels)).clone(),
                "the negative is not checked: n must show another person, labels[a] != labels[n]."),
        Mistake("no_positive_condition",
                lambda labels: (~_same(labels)).unsqueeze(1).expand(-1, len(labels), -1).clone(),
                "the positive is not checked: p must be another picture of the anchor's person."),
        Mistake("positive_and_negative_swapped",
                lambda labels: (~_same(labels)).unsqueeze(2) & (_same(labels) & _not_self(labels)).unsqueeze(1),
                "the conditions are swapped: mask[a, p, n] needs labels[a] == labels[p] (and a != p) and "
                "labels[a] != labels[n]."),
    ),
    error_hints=(
        ErrorHint("size_mismatch", "must match the size of tensor",
                  "two masks of different shapes were combined. Make both (B, B, B)-compatible: (B, B, 1) "
                  "for the anchor-positive mask and (B, 1, B) for the anchor-negative mask."),
    ),
    needs_gradient=False,
)


def check_valid_triplet_mask(function) -> CheckResult:
    """Check a learner's valid_triplet_mask(labels): (B,) -> (B, B, B) bool.

    A wrong mask is compared entry by entry with `course_utils.reference.valid_triplet_mask`
    (the loops over a, p and n); the right mask with its axes in another order is named
    "axes_swapped" with the order the learner used.
    """
    return run_mask_check(function, VALID_TRIPLET_MASK, explain_entry=_explain_triplet, axis_names=("a", "p", "n"))


# ---------------------------------------------------------------------------
# Notebook 05: batch-hard selection with masks, one loss per anchor.


def _points_distances(seed: int, n: int, d: int) -> torch.Tensor:
    """Squared distances between n fixed pseudo-random points in d dimensions (float32)."""
    generator = torch.Generator().manual_seed(seed)
    points = torch.randint(-10, 11, (n, d), generator=generator).double() / 10
    return reference.pairwise_distances(points).float()


def _batch_hard_by_loops(dist: torch.Tensor, labels: torch.Tensor, alpha: float, positive_pick=max,
                         negative_pick=min, negatives_include=lambda a, j, labels: labels[a] != labels[j],
                         clamp: bool = True) -> torch.Tensor:
    """Per anchor: pick among its positives and its negatives, then the hinge; loops in float64."""
    dist = dist.detach().double()
    losses = []
    for a in range(len(labels)):
        positives = [dist[a, p] for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        negatives = [dist[a, j] for j in range(len(labels)) if negatives_include(a, j, labels)]
        loss = positive_pick(positives) - negative_pick(negatives) + alpha
        losses.append(loss.clamp(min=0) if clamp else loss)
    return torch.stack(losses)


def _mean(values):
    return torch.stack(values).mean()


BATCH_HARD_LOSSES = Exercise(
    name="batch_hard_losses",
    returns="one loss per anchor, a tensor of shape (B,)",
    expected=_batch_hard_by_loops,
    cases=(
        Case("6 pictures of 3 persons in 2-D, alpha = 0.2",
             (_points_distances(1, 6, 2), torch.tensor([0, 0, 1, 1, 2, 2]), 0.2)),
        Case("7 pictures of 2 persons, ids unsorted, alpha = 0.5",
             (_points_distances(2, 7, 3), torch.tensor([4, 9, 4, 9, 9, 4, 4]), 0.5)),
        Case("8 pictures of 4 persons, alpha = 0.1",
             (_points_distances(3, 8, 4), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0]), 0.1)),
    ),
    mistakes=(
        Mistake("negatives_include_self",
                lambda dist, labels, alpha: _batch_hard_by_loops(
                    dist, labels, alpha, negatives_include=lambda a, j, labels: True),
                "the anchor itself (distance 0) was taken as its closest negative. Before the min over "
                "negatives, hide every same-person entry, the anchor included: fill them with "
                "torch.finfo(dist.dtype).max."),
        Mistake("negatives_include_positives",
                lambda dist, labels, alpha: _batch_hard_by_loops(
                    dist, labels, alpha, negatives_include=lambda a, j, labels: j != a),
                "the closest 'negative' can be a picture of the anchor's own person. Only pictures with "
                "labels[j] != labels[a] are negatives: mask the others out before the min."),
        Mistake("easiest_not_hardest",
                lambda dist, labels, alpha: _batch_hard_by_loops(dist, labels, alpha, min, max),
                "you picked the closest positive and the farthest negative: the easiest triplet. Batch-hard "
                "takes the farthest positive (max) and the closest negative (min)."),
        Mistake("mean_of_positives",
                lambda dist, labels, alpha: _batch_hard_by_loops(dist, labels, alpha, positive_pick=_mean),
                "you averaged the positives' distances. Batch-hard takes the farthest positive: a max."),
        Mistake("forgot_max_with_zero",
                lambda dist, labels, alpha: _batch_hard_by_loops(dist, labels, alpha, clamp=False),
                "the hinge is missing: each anchor's loss is max(hardest d(A,P) - hardest d(A,N) + alpha, 0); "
                "use torch.clamp(..., min=0)."),
        Mistake("returned_mean",
                lambda dist, labels, alpha: _batch_hard_by_loops(dist, labels, alpha).mean(),
                "you returned the mean over anchors. This exercise asks for one loss per anchor, shape (B,)."),
    ),
    error_hints=(
        ErrorHint("builtin_max", "Boolean value of Tensor with more than one value is ambiguous",
                  "Python's built-in max or an `if` works on one number. Use tensor methods: "
                  "dist.masked_fill(...).max(dim=1).values and torch.clamp(x, min=0)."),
        ErrorHint("in_place_on_input", "a leaf Variable that requires grad is being used in an in-place operation",
                  "masked_fill_ (with an underscore) changes dist in place; use masked_fill, which returns a new tensor."),
    ),
    # The framework would make every tensor argument require a gradient, and integer labels cannot.
    needs_gradient=False,
)


def check_batch_hard_losses(function) -> CheckResult:
    """Check a learner's batch_hard_losses(dist, labels, alpha): (B, B), (B,), float -> (B,)."""
    return run_check(function, BATCH_HARD_LOSSES)
