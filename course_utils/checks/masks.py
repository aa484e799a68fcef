"""Checks of notebooks 04 and 05, whose answers are (B, B, B) boolean masks: valid triplets, semi-hard triplets."""
from __future__ import annotations

from itertools import permutations

import torch

from course_utils.checks.runner import (Case, CheckResult, ErrorHint, Exercise, Mistake, fail, masks_match,
                                        returned_none, run_check, shown_case)
from course_utils.core import reference


def _show_masks(answer: torch.Tensor, expected: torch.Tensor, args: tuple = ()) -> str:
    """How many entries are True, and the shapes: a B^3 mask is too big to print."""
    def shown(mask):
        return f"{int(mask.sum())} True entries (shape {tuple(mask.shape)}, dtype {mask.dtype})"
    return f"    your answer: {shown(answer)}\n    expected:    {shown(expected)}"


def _mask_form(exercise: Exercise, case: Case, answer, expected: torch.Tensor) -> CheckResult | None:
    """Why the answer is not a boolean tensor; None when it is."""
    where = f"on the test case \"{case.description}\""
    if answer is None:
        return returned_none(exercise, case)
    if not isinstance(answer, torch.Tensor):
        return fail(exercise, f"returned a {type(answer).__name__} {where}, not a torch tensor.",
                    f"  Expected {exercise.returns}.\n  Hint: build the mask with tensor comparisons "
                    "(==, !=) and combine them with & (no Python loops or lists).", "not_a_tensor")
    if answer.dtype != torch.bool:
        same_entries = answer.shape == expected.shape and bool(torch.equal(answer.cpu() != 0, expected))
        note = " Its True/False pattern is right; only the dtype is wrong." if same_entries else ""
        return fail(exercise, f"returned a tensor of dtype {answer.dtype} {where}.",
                    f"  Expected {exercise.returns}.{note}\n  Hint: combine comparisons with & (and), | (or) "
                    "and ~ (not); multiplying them or calling .float() or .long() turns the mask into numbers.",
                    "not_boolean")
    return None


MASK_ANSWERS = dict(
    needs_gradient=False, matches=masks_match, show=_show_masks, wrong_form=_mask_form,
    shape_hint="Give the (B, B) pair masks the missing axis with .unsqueeze before combining them.",
    fallback_hint="pick one entry [a, p, n] where your mask differs and decide by hand whether (a, p, n) is a "
                  "valid triplet.",
)


# Notebook 04: the valid-triplet mask of a batch.


_positive, _negative = reference.anchor_positive_mask, reference.anchor_negative_mask  # (B, B) bool


def _explain_triplet(labels: torch.Tensor, a: int, p: int, n: int) -> str:
    person = labels.tolist()
    if a == p:
        why = "is no valid triplet: the positive is the anchor itself (a == p)."
    elif person[p] != person[a]:
        why = f"is no valid triplet: the positive shows person {person[p]}, the anchor person {person[a]}."
    elif person[n] == person[a]:
        why = f"is no valid triplet: the negative shows the anchor's own person {person[a]}."
    else:
        why = f"is a valid triplet: a and p are two pictures of person {person[a]}, n shows person {person[n]}."
    return f"(a={a}, p={p}, n={n}) {why}"


def _show_entries(answer: torch.Tensor, expected: torch.Tensor, args: tuple, shown: int = 2) -> str:
    """Where a wrong valid-triplet mask differs: how many entries, and the first few explained in words."""
    if answer.shape != expected.shape:
        return _show_masks(answer, expected)
    differs = answer.cpu() != expected
    extra = (differs & answer.cpu()).nonzero().tolist()
    missing = (differs & expected).nonzero().tolist()
    lines = [f"    your mask differs from the expected one at {int(differs.sum())} of {differs.numel()} entries: "
             f"{len(extra)} True that should be False, {len(missing)} False that should be True."]
    for index, yours in [(i, "True") for i in extra[:shown]] + [(i, "False") for i in missing[:shown]]:
        lines.append(f"      mask[{', '.join(map(str, index))}] is {yours} in yours, but "
                     f"{_explain_triplet(*args, *index)}")
    return "\n".join(lines)


def _axes_swapped(exercise: Exercise, number: int, answers: list, expected: torch.Tensor) -> CheckResult | None:
    """Why the answer is the expected mask with its axes in another order; None when it is not."""
    case, answer, names = exercise.cases[number], answers[number], ("a", "p", "n")
    if answer.dim() != 3 or sorted(answer.shape) != sorted(expected.shape):
        return None
    order = next((o for o in permutations(range(3)) if o != (0, 1, 2) and masks_match(answer, expected.permute(o))),
                 None)
    if order is None:
        return None
    return fail(exercise, f"gives the right mask with its axes swapped: yours is indexed "
                f"[{', '.join(names[axis] for axis in order)}], the exercise asks for [a, p, n].",
                f"{shown_case(exercise, case, answer, expected)}\n  Hint: {exercise.name}(labels)[a, p, n] must be "
                "True for the valid triplet (a, p, n). Put each (B, B) mask on the axes of its two pictures: the "
                "anchor-positive mask is indexed [a, p], so it gets .unsqueeze(2), shape (B, B, 1); the "
                "anchor-negative mask is indexed [a, n], so it gets .unsqueeze(1), shape (B, 1, B).", "axes_swapped")


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
                "a picture is counted as its own positive (a == p). The positive must be a different "
                "picture of the same person: add `& ~torch.eye(B, dtype=torch.bool)` to the positive mask."),
        Mistake("no_negative_condition",
                lambda labels: _positive(labels).unsqueeze(2).expand(-1, -1, len(labels)).clone(),
                "the negative is not checked: n must show another person, labels[a] != labels[n]."),
        Mistake("no_positive_condition",
                lambda labels: _negative(labels).unsqueeze(1).expand(-1, len(labels), -1).clone(),
                "the positive is not checked: p must be another picture of the anchor's person."),
        Mistake("positive_and_negative_swapped",
                lambda labels: _negative(labels).unsqueeze(2) & _positive(labels).unsqueeze(1),
                "the conditions are swapped: mask[a, p, n] needs labels[a] == labels[p] (and a != p) and "
                "labels[a] != labels[n]."),
    ),
    error_hints=(
        ErrorHint("size_mismatch", "must match the size of tensor",
                  "two masks of different shapes were combined. Make both (B, B, B)-compatible: (B, B, 1) "
                  "for the anchor-positive mask and (B, 1, B) for the anchor-negative mask."),
    ),
    **{**MASK_ANSWERS, "show": _show_entries},
    explain=_axes_swapped,
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
    return (points.unsqueeze(1) - points.unsqueeze(0)).pow(2).sum(dim=2)


def _window(dist, labels, alpha, low="<", high="<", valid=True, swap=False, lower=True, upper=True):
    """A semi-hard mask with one thing changed: what the mistakes return."""
    d_ap, d_an = dist.unsqueeze(2), dist.unsqueeze(1)  # (B, B, 1) and (B, 1, B)
    if swap:
        d_ap, d_an = d_an, d_ap
    above = (d_an > d_ap) if low == "<" else (d_an >= d_ap)
    below = (d_an < d_ap + alpha) if high == "<" else (d_an <= d_ap + alpha)
    mask = (above if lower else torch.ones_like(above)) & (below if upper else torch.ones_like(below))
    return mask & reference.valid_triplet_mask(labels) if valid else mask


SEMIHARD_MASK = Exercise(
    name="semihard_mask",
    returns=("a boolean tensor of shape (B, B, B), mask[a, p, n] True when (a, p, n) is a valid triplet "
             "with d(a,p) < d(a,n) < d(a,p) + alpha"),
    expected=reference.semihard_window_mask,
    cases=(
        Case("pair at distance 1; negatives at 0.5, 1 (a tie), 1.25, 1.5 (the edge d(a,p) + alpha) and 2; "
             "alpha = 0.5",
             (_line_distances(0, 1, 0.5, -1, 1.25, -1.5, 2), torch.tensor([0, 0, 1, 2, 3, 4, 5]), 0.5)),
        Case("one negative closer than the positive, the other beyond the margin: no semi-hard triplet; "
             "alpha = 0.5",
             (_line_distances(0, 2, 1, -3), torch.tensor([0, 0, 1, 2]), 0.5)),
        Case("9 pictures of 3 persons at integer points, squared distances with ties, alpha = 2",
             (_grid_distances(5, 9), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2]), 2.0)),
        Case("3 pictures of one person: no negative, so no triplet",
             (_grid_distances(6, 3), torch.tensor([4, 4, 4]), 1.0)),
    ),
    mistakes=(
        Mistake("axes_swapped", lambda dist, labels, alpha: _window(dist, labels, alpha, swap=True),
                "d(a,p) and d(a,n) sit on the wrong axes. In mask[a, p, n] the positive is axis 1 and the "
                "negative axis 2: d(a,p) is dist.unsqueeze(2) (shape (B, B, 1)) and d(a,n) is "
                "dist.unsqueeze(1) (shape (B, 1, B))."),
        Mistake("no_margin", lambda dist, labels, alpha: _window(dist, labels, alpha, upper=False),
                "every negative farther than the positive is kept, also those beyond the margin, whose loss is "
                "already 0. Semi-hard also needs d(a,n) < d(a,p) + alpha."),
        Mistake("hard_included", lambda dist, labels, alpha: _window(dist, labels, alpha, lower=False),
                "negatives closer than the positive (hard ones) are kept. Semi-hard also needs d(a,n) > d(a,p)."),
        Mistake("not_a_valid_triplet", lambda dist, labels, alpha: _window(dist, labels, alpha, valid=False),
                "the distances are right, but (a, p, n) must also be a valid triplet: combine with notebook 04's "
                "valid-triplet mask (p another picture of a's person, n another person)."),
        Mistake("ties_kept", lambda dist, labels, alpha: _window(dist, labels, alpha, low="<=", high="<="),
                "ties are kept on both edges. Both inequalities are strict: d(a,n) = d(a,p) is hard, and "
                "d(a,n) = d(a,p) + alpha has loss 0 (easy). Use > and <, not >= and <=."),
        Mistake("tie_with_positive_kept", lambda dist, labels, alpha: _window(dist, labels, alpha, low="<="),
                "a negative exactly as far as the positive (d(a,n) = d(a,p)) is hard, not semi-hard: use >, not >=."),
        Mistake("tie_with_margin_kept", lambda dist, labels, alpha: _window(dist, labels, alpha, high="<="),
                "a negative exactly at d(a,p) + alpha has loss 0, so it is easy: use <, not <=."),
    ),
    error_hints=(
        ErrorHint("size_mismatch", "must match the size of tensor",
                  "two tensors of different shapes were combined. Give d(a,p) the shape (B, B, 1) with "
                  "dist.unsqueeze(2) and d(a,n) the shape (B, 1, B) with dist.unsqueeze(1)."),
    ),
    **MASK_ANSWERS,
)


def check_semihard_mask(function) -> CheckResult:
    """Check a learner's semihard_mask(dist, labels, alpha): (B, B), (B,), float -> (B, B, B) bool."""
    return run_check(function, SEMIHARD_MASK)
