"""Checks for the notebooks' exercises: run the learner's function, say precisely what is wrong.

A check calls the learner's function on a few small test cases and compares each
answer with `course_utils.core.reference`. When an answer is wrong it looks for the
typical mistake that explains it (forgot the max with 0, used the distance instead of
its square, summed over the wrong axis, ...) by computing what each known mistake
would have returned and comparing. A function that still raises NotImplementedError
gets a kind "not implemented yet" message instead of a traceback.

Every check prints one clear message and returns a `CheckResult` (true when passed).

Adding a check for a new exercise (notebooks 04-08 do it the same way):
1. write its test cases as `Case` objects (small, with shapes that cannot be confused,
   for example n != d, so a sum over the wrong axis shows up as a wrong shape);
2. write the typical mistakes as `Mistake` objects: a function computing what the
   mistaken code returns, and the hint to show;
3. describe it in an `Exercise` (the reference answer comes from `course_utils.core.reference`);
4. add a one-line public function ``check_<name>(function)`` returning
   ``run_check(function, EXERCISE)``, and a test that feeds it real mistaken code.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import zip_longest
from typing import Callable

import torch
from torch.overrides import TorchFunctionMode

from course_utils.core import reference

# Learners compute in float32; answers are compared in float64 with float32-sized tolerances.
RELATIVE_TOLERANCE = 1e-4
ABSOLUTE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        exercise: the exercise's name.
        passed: True when every case matched the reference.
        message: what was printed for the learner.
        mistake: short name of what went wrong ("forgot_max", "not_implemented", ...),
            None when passed or when no known mistake explains the answer.
    """

    exercise: str
    passed: bool
    message: str
    mistake: str | None = None

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Case:
    """One test case: the arguments passed to the learner's function.

    Attributes:
        description: a few words a learner recognises, for example "three pairs in 4-D".
        args: positional arguments; tensors are copied before each call.
    """

    description: str
    args: tuple


@dataclass(frozen=True)
class Mistake:
    """A typical mistake: what the mistaken code returns, and what to change.

    Attributes:
        name: short identifier, for example "forgot_max".
        compute: function of the case's arguments returning the mistaken answer.
        hint: the advice shown when the learner's answer matches this mistake.
    """

    name: str
    compute: Callable[..., torch.Tensor]
    hint: str


@dataclass(frozen=True)
class ErrorHint:
    """Advice for an exception whose message contains a known phrase.

    Attributes:
        name: short identifier of the mistake.
        phrase: text to look for in the exception's message.
        hint: the advice shown.
    """

    name: str
    phrase: str
    hint: str


@dataclass(frozen=True)
class Exercise:
    """Everything a check needs to know about one exercise.

    Attributes:
        name: the function name the notebook asks for.
        returns: what the answer should be, in words ("one distance per row, shape (n,)").
        expected: reference answer (float64 tensor) for a case's arguments.
        cases: the test cases.
        mistakes: typical mistakes, most specific first.
        error_hints: advice for typical exceptions.
        needs_gradient: the answer must stay attached to the autograd graph.
        show: (answer, expected) -> the lines showing a wrong answer beside the expected one;
            None shows both as short flat lists.
        shape_hint: the advice when a wrong answer has the wrong shape and no known mistake explains it.
        after_cases: further checks run once every case has the right numbers, in order; each is
            called as check(function, exercise) and returns a CheckResult that stops the check, or None.
    """

    name: str
    returns: str
    expected: Callable[..., torch.Tensor]
    cases: tuple[Case, ...]
    mistakes: tuple[Mistake, ...]
    error_hints: tuple[ErrorHint, ...] = field(default_factory=tuple)
    needs_gradient: bool = True
    show: Callable[[torch.Tensor, torch.Tensor], str] | None = None
    shape_hint: str = ("Check which dimension you reduce (dim=1 adds up the coordinates of each row) "
                       "and whether you kept an extra dimension.")
    after_cases: tuple[Callable[..., CheckResult | None], ...] = ()


# ---------------------------------------------------------------------------
# The machinery shared by every check.


def _fresh_copies(args: tuple, requires_grad: bool) -> tuple:
    """Copies of the tensor arguments, so a learner's in-place change cannot leak into the next case.

    Only floating tensors can require a gradient; integer ones (labels) are copied as they are.
    """
    return tuple(
        a.detach().clone().requires_grad_(requires_grad and a.is_floating_point()) if isinstance(a, torch.Tensor) else a
        for a in args
    )


def _show(value) -> str:
    """Short readable text for a tensor or number: values to 4 decimals, and the shape."""
    if isinstance(value, torch.Tensor):
        numbers = value.detach().double().flatten()
        shown = ", ".join(f"{v:.4f}" for v in numbers[:6].tolist())
        more = ", ..." if numbers.numel() > 6 else ""
        if value.dim() == 0:
            return f"tensor({shown}) (a 0-d tensor, shape ())"
        return f"[{shown}{more}] (shape {tuple(value.shape)})"
    return repr(value)


def _describe_args(args: tuple) -> str:
    """"shape (3, 4), shape (3, 4), 0.2": tensors by their shape, numbers as they are."""
    return ", ".join(f"shape {tuple(a.shape)}" if isinstance(a, torch.Tensor) else repr(a) for a in args)


def _matches(answer, target: torch.Tensor) -> bool:
    """Same shape and the same numbers up to float32 round-off (nan only where the target has nan,
    so a mistake that produces nan can be recognised; no reference answer contains nan)."""
    return (
        isinstance(answer, torch.Tensor)
        and answer.shape == target.shape
        and bool(torch.allclose(answer.detach().double(), target.double(),
                                rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE, equal_nan=True))
    )


def _fail(exercise: Exercise, headline: str, details: str, mistake: str | None) -> CheckResult:
    message = f"Not yet: {exercise.name} {headline}\n{details}"
    return CheckResult(exercise.name, False, message, mistake)


def _diagnose_exception(exercise: Exercise, case: Case, error: Exception) -> CheckResult:
    text = f"{type(error).__name__}: {error}"
    for known in exercise.error_hints:
        if known.phrase in str(error):
            return _fail(exercise, f"raised an error on the test case \"{case.description}\".",
                         f"  The error: {text}\n  Hint: {known.hint}", known.name)
    return _fail(exercise, f"raised an error on the test case \"{case.description}\".",
                 f"  Arguments: {_describe_args(case.args)}\n  The error: {text}\n"
                 "  Hint: run your function on these arguments in a new cell to see where it fails.", None)


def _wrong_type(exercise: Exercise, case: Case, answer, expected: torch.Tensor) -> CheckResult | None:
    """A message when the answer is not a floating-point tensor at all; None when it is."""
    where = f"on the test case \"{case.description}\""
    if answer is None:
        return _fail(exercise, f"returned None {where}.",
                     "  Hint: did you forget the `return` statement at the end of the function?", "returned_none")
    if isinstance(answer, (bool, int, float)):
        same = expected.dim() == 0 and _matches(torch.tensor(float(answer)), expected)
        value_note = " The value is right; only its type is wrong." if same else ""
        zero_note = (" Where the answer is 0, return a 0 that is still a tensor computed from the inputs, "
                     "such as x.sum() * 0." if answer == 0 else "")
        return _fail(
            exercise, f"returned a Python {type(answer).__name__} ({answer!r}) {where}, not a torch tensor.",
            f"  Expected {exercise.returns}.{value_note}\n"
            "  Hint: a Python number has no gradient, so training could not learn from it. Keep the result a "
            "tensor: don't call .item() or float(), and use torch.clamp(x, min=0) (or torch.relu) rather than "
            f"Python's built-in max(x, 0).{zero_note}", "python_number")
    if not isinstance(answer, torch.Tensor):
        return _fail(exercise, f"returned a {type(answer).__name__} {where}, not a torch tensor.",
                     f"  Expected {exercise.returns}.\n"
                     "  Hint: use torch operations on the input tensors all the way through (no NumPy, no lists).",
                     "not_a_tensor")
    if not answer.is_floating_point():
        return _fail(exercise, f"returned a tensor of dtype {answer.dtype} {where}.",
                     f"  Expected {exercise.returns}, as floating-point numbers.\n"
                     "  Hint: distances and losses are real numbers; an integer or boolean result means a "
                     "comparison or a rounding crept in.", "not_floating")
    return None


def find_mistake(exercise: Exercise, failing: int, answers: list, matches) -> Mistake | None:
    """The known mistake that reproduces the wrong answer to case `failing`, or None.

    A mistake that reproduces every tensor answer is preferred to one that matches only the
    failing case. `matches(answer, expected)` decides equality (tolerance for numbers, exact for masks).
    """
    case, answer = exercise.cases[failing], answers[failing]
    explaining = [m for m in exercise.mistakes if matches(answer, m.compute(*case.args))]
    everywhere = [
        m for m in explaining
        if all(matches(a, m.compute(*c.args)) for c, a in zip(exercise.cases, answers) if isinstance(a, torch.Tensor))
    ]
    return (everywhere or explaining or [None])[0]


def _diagnose_wrong_answer(exercise: Exercise, failing: int, answers: list, expected: torch.Tensor) -> CheckResult:
    """Explain the wrong answer to case number `failing`: by a known mistake that reproduces it, else by the numbers."""
    case, answer = exercise.cases[failing], answers[failing]
    found = find_mistake(exercise, failing, answers, _matches)
    shown = (exercise.show(answer, expected) if exercise.show is not None
             else f"    your answer: {_show(answer)}\n    expected:    {_show(expected)}")
    got = f"  Test case \"{case.description}\" (arguments: {_describe_args(case.args)}):\n{shown}"
    if found is not None:
        return _fail(exercise, "gives a wrong answer.", f"{got}\n  Hint: {found.hint}", found.name)
    if answer.shape != expected.shape:
        return _fail(exercise, f"returns shape {tuple(answer.shape)} where {tuple(expected.shape)} is expected.",
                     f"{got}\n  Hint: it should return {exercise.returns}. {exercise.shape_hint}", "wrong_shape")
    return _fail(exercise, "gives a wrong answer.",
                 f"{got}\n  Hint: compute this case by hand, step by step, and compare with your code.", None)


def run_check(function, exercise: Exercise) -> CheckResult:
    """Run a learner's function on every case of an exercise, print and return the verdict.

    Args:
        function: the learner's function.
        exercise: what to check it against.
    Returns:
        CheckResult; true when every case matched the reference.
    """
    if not callable(function):
        raise TypeError(
            f"pass the function itself, for example check_{exercise.name}({exercise.name}) without "
            f"parentheses after {exercise.name}; got a {type(function).__name__}."
        )
    result = _run_cases(function, exercise)
    print(result.message)
    return result


def collect_answers(function, exercise: Exercise, requires_grad: bool) -> list | CheckResult:
    """Run the learner's function on every case; the answers, or the CheckResult that stops the check.

    Stops kindly at a stub that still raises NotImplementedError, explains any other error, and
    catches a function that changes its inputs in place. Shared by every kind of check.
    """
    answers = []
    for case in exercise.cases:
        inputs = _fresh_copies(case.args, requires_grad)
        try:
            answers.append(function(*inputs))
        except NotImplementedError:
            message = (
                f"{exercise.name} is not implemented yet. Replace the line `raise NotImplementedError()` "
                "with your code, run that cell, then run this check again. No hurry: everything you need "
                "is in the text above."
            )
            return CheckResult(exercise.name, False, message, "not_implemented")
        except Exception as error:  # noqa: BLE001 - any error in learner code is reported, not raised
            return _diagnose_exception(exercise, case, error)
        if any(isinstance(a, torch.Tensor) and not torch.equal(a, b) for a, b in zip(inputs, case.args)):
            return _fail(exercise, f"changed its input tensors on the test case \"{case.description}\".",
                         "  Hint: an in-place operation such as a -= b or x.clamp_(...) overwrote an argument; "
                         "compute a new tensor instead (diff = a - b).", "modified_input")
    return answers


def _run_cases(function, exercise: Exercise) -> CheckResult:
    answers = collect_answers(function, exercise, exercise.needs_gradient)
    if isinstance(answers, CheckResult):
        return answers
    for number, (case, answer) in enumerate(zip(exercise.cases, answers)):
        expected = exercise.expected(*case.args)
        wrong = _wrong_type(exercise, case, answer, expected)
        if wrong is not None:
            return wrong
        if not _matches(answer, expected):
            return _diagnose_wrong_answer(exercise, number, answers, expected)
        if exercise.needs_gradient and answer.grad_fn is None:
            return _fail(exercise, "gives the right numbers, but detached from the autograd graph.",
                         f"  Test case \"{case.description}\": the answer has no grad_fn, so no gradient can "
                         "flow back to the encodings.\n  Hint: build the result with torch operations on "
                         "the inputs; torch.tensor(...), .detach(), .item() or .numpy() cut the graph.",
                         "detached")
    for further_check in exercise.after_cases:
        verdict = further_check(function, exercise)
        if verdict is not None:
            return verdict
    count = len(exercise.cases) + len(exercise.after_cases)
    return CheckResult(exercise.name, True, f"Well done: {exercise.name} is correct on all {count} test cases.")


# ---------------------------------------------------------------------------
# Shared pieces of the reference answers and mistakes (all in float64).


def _rows(a: torch.Tensor, b: torch.Tensor, metric: str = "squared_euclidean") -> torch.Tensor:
    """d(a_i, b_i) for every row, from the reference's one-pair definition."""
    return torch.stack([reference.distance(x, y, metric) for x, y in zip(a, b)])


def _violations(anchor, positive, negative, alpha, metric="squared_euclidean") -> torch.Tensor:
    """d(A,P) - d(A,N) + alpha for every triplet, before the max with 0."""
    return _rows(anchor, positive, metric) - _rows(anchor, negative, metric) + alpha


def _diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.double() - b.double()


def _grid(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def _random(seed: int, *shape: int) -> torch.Tensor:
    """Fixed pseudo-random float32 values with one decimal, easy to recompute by hand."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(-20, 21, shape, generator=generator).float() / 10


# ---------------------------------------------------------------------------
# Notebook 01: squared Euclidean distance of paired rows.

SQUARED_DISTANCE = Exercise(
    name="squared_distance",
    returns="one squared distance per row pair, a tensor of shape (n,)",
    expected=lambda a, b: _rows(a, b),
    cases=(
        Case("one pair in 2-D, a 3-4-5 triangle", (_grid([0.0, 0.0]), _grid([3.0, 4.0]))),
        Case("three pairs in 4-D", (_random(1, 3, 4), _random(2, 3, 4))),
        Case("two identical pairs in 3-D (distance 0)", (_random(3, 2, 3), _random(3, 2, 3))),
        Case("five pairs in 1-D", (_random(4, 5, 1), _random(5, 5, 1))),
    ),
    mistakes=(
        Mistake("not_squared", lambda a, b: _rows(a, b, "euclidean"),
                "these are plain Euclidean distances ||a - b||. The course's d is the SQUARE, ||a - b||²: "
                "drop the square root (torch.sqrt or .norm()), or square its result."),
        Mistake("sum_wrong_axis", lambda a, b: (_diff(a, b) ** 2).sum(dim=0),
                "you added up over dim=0, across the different pairs. Each row is one pair; add up its "
                "coordinates with .sum(dim=1) to get one distance per row."),
        Mistake("no_sum", lambda a, b: _diff(a, b) ** 2,
                "you squared the coordinate differences but did not add them up. Finish with .sum(dim=1)."),
        Mistake("sum_all", lambda a, b: (_diff(a, b) ** 2).sum(),
                "you added up everything into one number for the whole batch. The exercise wants one distance "
                "per row: .sum(dim=1)."),
        Mistake("kept_dim", lambda a, b: (_diff(a, b) ** 2).sum(dim=1, keepdim=True),
                "your result is a column of shape (n, 1). Drop keepdim=True (or use .squeeze(1)) so the "
                "shape is (n,)."),
        Mistake("mean_not_sum", lambda a, b: (_diff(a, b) ** 2).mean(dim=1),
                "you averaged the squared differences (.mean). The squared distance ADDS them: use .sum(dim=1)."),
        Mistake("absolute_not_squared", lambda a, b: _diff(a, b).abs().sum(dim=1),
                "you added up absolute differences |a - b| (the Manhattan distance). Square each difference "
                "instead: ((a - b) ** 2).sum(dim=1)."),
        Mistake("squared_after_sum", lambda a, b: _diff(a, b).sum(dim=1) ** 2,
                "you added the differences first and squared the total. Square each coordinate's difference "
                "first, then add: ((a - b) ** 2).sum(dim=1)."),
        Mistake("squares_subtracted", lambda a, b: (a.double() ** 2 - b.double() ** 2).sum(dim=1),
                "you squared a and b separately and then subtracted; ||a||² - ||b||² is not ||a - b||². "
                "Subtract first, then square."),
    ),
    error_hints=(
        ErrorHint("in_place_on_input", "a leaf Variable that requires grad is being used in an in-place operation",
                  "an in-place operation (such as a -= b) changes the input tensor. "
                  "Compute a new tensor: diff = a - b."),
    ),
)


def check_squared_distance(function) -> CheckResult:
    """Check a learner's squared_distance(a, b): (n, d), (n, d) -> (n,) of ||a_i - b_i||^2."""
    return run_check(function, SQUARED_DISTANCE)


# ---------------------------------------------------------------------------
# Notebook 01: the vectorised matrix of all squared distances.


def _expansion(x: torch.Tensor, row_norms: float = 1.0, cross: float = -2.0, column_norms: float = 1.0) -> torch.Tensor:
    """row_norms * ||x_i||^2 + cross * x_i.x_j + column_norms * ||x_j||^2: the vectorised distance
    matrix with the coefficients of its three terms adjustable, to reproduce slips in any of them."""
    x = x.double()
    squared_norms = (x * x).sum(dim=1)
    return row_norms * squared_norms[:, None] + cross * (x @ x.T) + column_norms * squared_norms[None, :]


def _table(value: torch.Tensor, differs: torch.Tensor | None) -> list[str]:
    """The rows of a 1-D or 2-D tensor as text, 4 decimals, an entry that differs marked with *."""
    rows = value.detach().double().reshape(-1 if value.dim() == 2 else 1, value.shape[-1] if value.dim() else 1)
    marks = (differs.reshape(rows.shape) if differs is not None else torch.zeros(rows.shape, dtype=torch.bool))
    return ["".join(f"{v:9.4f}{'*' if m else ' '}" for v, m in zip(row, mark))
            for row, mark in zip(rows.tolist(), marks.tolist())]


def show_side_by_side(answer, expected: torch.Tensor, largest: int = 6) -> str:
    """A wrong answer and the expected one as small tables next to each other; entries that differ get a *.

    Falls back to the short flat lists when either is larger than largest x largest or has more
    than two dimensions.

    Args:
        answer: what the learner's function returned (a tensor).
        expected: the reference answer.
        largest: the most rows and columns shown.
    Returns:
        the lines, indented for a check's message.
    """
    def fits(value) -> bool:
        return isinstance(value, torch.Tensor) and 1 <= value.dim() <= 2 and max(value.shape) <= largest

    if not (fits(answer) and fits(expected)):
        return f"    your answer: {_show(answer)}\n    expected:    {_show(expected)}"
    differs = None
    if answer.shape == expected.shape:
        differs = ~torch.isclose(answer.detach().double(), expected.double(),
                                 rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE)
    left = [f"your answer, shape {tuple(answer.shape)}"] + _table(answer, differs)
    right = [f"expected, shape {tuple(expected.shape)}"] + _table(expected, None)
    width = max(len(line) for line in left) + 4
    lines = [f"    {a:<{width}}{b}".rstrip() for a, b in zip_longest(left, right, fillvalue="")]
    if differs is not None and differs.any():
        lines.append("    (* marks the entries of your answer that differ from the expected ones)")
    return "\n".join(lines)


NORMS_SAME_AXIS_HINT = (
    "both squared-norm terms were added along the same axis. One must be a column, shape (n, 1), "
    "the other a row, shape (1, n): sq[:, None] - 2 * x @ x.T + sq[None, :]."
)
ONE_NORM_MISSING_HINT = "one squared-norm term is missing: ||x_i - x_j||² = ||x_i||² - 2 x_i·x_j + ||x_j||²."


def _near_duplicates(seed: int, n: int, d: int) -> torch.Tensor:
    """3n points in d-D with coordinates between 1000 and 2000: n points, an exact copy of each, and
    a copy nudged by 0.001 in some coordinates. Their squared distances are 0 or about 1e-5, far
    below the float32 round-off of ||x_i||² - 2 x_i·x_j + ||x_j||² (about 1 at this size), so
    the expansion without a clamp gives some negative entries there."""
    generator = torch.Generator().manual_seed(seed)
    base = 1000 * (1 + torch.rand(n, d, generator=generator))
    nudge = torch.randint(-1, 2, (n, d), generator=generator).float() * 1e-3
    return torch.cat([base, base, base + nudge])


ROUND_OFF_CASE = Case("36 points in 16-D with large coordinates, each with a copy and a near copy",
                      (_near_duplicates(14, 12, 16),))
LOOP_CASE = Case("100 points in 3-D", (_random(15, 100, 3),))


class _TooManyTorchCalls(BaseException):
    """Raised inside a learner's function once it has made more torch calls than a vectorised answer could.

    A BaseException, so that an `except Exception` in the learner's code cannot swallow it."""


class _CountTorchCalls(TorchFunctionMode):
    """Counts the torch functions and tensor methods a piece of code calls (nested calls inside one
    torch function are not counted); past `limit` it stops the code by raising _TooManyTorchCalls."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.calls = limit, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        if self.calls > self.limit:
            raise _TooManyTorchCalls()
        return func(*args, **(kwargs or {}))


def _no_negative_distance(function, exercise: Exercise) -> CheckResult | None:
    """Fail when the answer on near-duplicate points with large coordinates has a negative entry."""
    answers = collect_answers(function, replace(exercise, cases=(ROUND_OFF_CASE,)), exercise.needs_gradient)
    if isinstance(answers, CheckResult):
        return answers
    (x,), answer = ROUND_OFF_CASE.args, answers[0]
    if not isinstance(answer, torch.Tensor) or answer.shape != (len(x), len(x)):
        shown = f"shape {tuple(answer.shape)}" if isinstance(answer, torch.Tensor) else f"a {type(answer).__name__}"
        return _fail(exercise, f"returns {shown} on the test case \"{ROUND_OFF_CASE.description}\".",
                     f"  Expected {exercise.returns}, here shape {(len(x), len(x))}.\n"
                     "  Hint: make your function work for any number of points n and any size d.", "wrong_shape")
    smallest = answer.detach().min()
    if not smallest < 0:
        return None
    i, j = divmod(int(answer.detach().argmin()), len(x))
    true = float(((x[i].double() - x[j].double()) ** 2).sum())
    return _fail(
        exercise, f"gives negative squared distances on the test case \"{ROUND_OFF_CASE.description}\".",
        f"  {int((answer.detach() < 0).sum())} entries are negative; the smallest is {float(smallest):.4f}, at row {i}, "
        f"column {j}, where the true squared distance is {true:.6f}.\n"
        "  Hint: in float32, ||x_i||² - 2 x_i·x_j + ||x_j||² subtracts numbers of about 10^7 that agree in every "
        "digit float32 keeps, so what is left is round-off, negative as often as positive. A squared distance "
        "is never negative: finish with .clamp(min=0), as the exercise asks.", "no_clamp")


def _no_python_loop(function, exercise: Exercise) -> CheckResult | None:
    """Fail when the function makes more torch calls than there are points: a loop over points or pairs.

    A vectorised answer makes the same few calls (about 2 to 15) for any number of points; a loop
    makes at least one per point, so on 100 points the two cannot be confused."""
    inputs = _fresh_copies(LOOP_CASE.args, exercise.needs_gradient)
    counter = _CountTorchCalls(limit=len(inputs[0]))
    try:
        with counter:
            function(*inputs)
    except _TooManyTorchCalls:
        return _fail(
            exercise, "gives the right numbers, but with a Python loop.",
            f"  On the test case \"{LOOP_CASE.description}\" it made more than {counter.limit} tensor operations, more "
            "than one per point; a vectorised answer makes the same handful for any number of points.\n"
            "  Hint: a loop takes one Python step per point or per pair, far too slow for real batches (see the "
            "timing above). Build all pairs at once: the broadcast difference x[:, None, :] - x[None, :, :], or the "
            "expansion with x @ x.T.", "python_loop")
    except Exception as error:  # noqa: BLE001 - any error in learner code is reported, not raised
        return _diagnose_exception(exercise, LOOP_CASE, error)
    return None


DISTANCE_MATRIX = Exercise(
    name="distance_matrix",
    returns="the (n, n) matrix of squared distances between all rows",
    expected=lambda x: reference.pairwise_distances(x),
    cases=(
        Case("three points in 2-D", (_grid([0.0, 0.0], [3.0, 4.0], [1.0, 0.0]),)),
        Case("five points in 3-D", (_random(6, 5, 3),)),
        Case("four points in 6-D, two of them equal", (torch.cat([_random(7, 3, 6), _random(7, 1, 6)]),)),
    ),
    mistakes=(
        Mistake("not_squared", lambda x: reference.pairwise_distances(x, metric="euclidean"),
                "these are plain Euclidean distances. The course's d is the square ||x_i - x_j||²: "
                "drop the square root (torch.cdist gives plain distances; square them)."),
        Mistake("no_sum", lambda x: (x.double()[:, None, :] - x.double()[None, :, :]) ** 2,
                "the result still has the coordinate dimension, shape (n, n, d). Add it up with .sum(dim=2) "
                "(or .sum(dim=-1), the last dimension)."),
        Mistake("broadcast_sum_wrong_axis", lambda x: ((x.double()[:, None, :] - x.double()[None, :, :]) ** 2).sum(dim=1),
                "you added up over the points instead of the coordinates. The broadcast difference "
                "x[:, None, :] - x[None, :, :] has shape (n, n, d): dims 0 and 1 are the two points of a pair, "
                "dim 2 the coordinates. Add up with .sum(dim=2) (or .sum(dim=-1))."),
        Mistake("cross_term_sign", lambda x: _expansion(x, cross=2.0),
                "check the sign of the cross term: ||x_i - x_j||² = ||x_i||² - 2 x_i·x_j + ||x_j||²."),
        Mistake("cross_term_factor", lambda x: _expansion(x, cross=-1.0),
                "the cross term needs a factor 2: ||x_i||² - 2 x_i·x_j + ||x_j||²."),
        Mistake("norms_same_axis", lambda x: _expansion(x, row_norms=0.0, column_norms=2.0), NORMS_SAME_AXIS_HINT),
        Mistake("norms_same_axis", lambda x: _expansion(x, row_norms=2.0, column_norms=0.0), NORMS_SAME_AXIS_HINT),
        Mistake("one_norm_missing", lambda x: _expansion(x, column_norms=0.0), ONE_NORM_MISSING_HINT),
        Mistake("one_norm_missing", lambda x: _expansion(x, row_norms=0.0), ONE_NORM_MISSING_HINT),
    ),
    show=show_side_by_side,
    shape_hint=("The broadcast difference x[:, None, :] - x[None, :, :] has shape (n, n, d), its coordinates on "
                "dim=2, so add up with .sum(dim=2); with the expansion, one squared-norm term must be a column "
                "(n, 1) and the other a row (1, n)."),
    after_cases=(_no_negative_distance, _no_python_loop),
)


def check_distance_matrix(function) -> CheckResult:
    """Check a learner's distance_matrix(x): (n, d) -> (n, n) of ||x_i - x_j||^2.

    Beyond the numbers on small cases it holds the answer to what the exercise asks: no negative
    entry where round-off strikes (near-duplicate points with large coordinates), and no Python
    loop (counted in torch calls on 100 points, never timed).
    """
    return run_check(function, DISTANCE_MATRIX)


# ---------------------------------------------------------------------------
# Notebook 02: the triplet loss of each triplet.

# Triplets chosen so every mistake gives different numbers: some meet the margin
# (loss 0), some violate it, and n != d everywhere.
_ANCHORS = _grid([0.0, 0.0], [1.0, 1.0], [0.0, 1.0])
_POSITIVES = _grid([0.5, 0.5], [1.0, 1.5], [0.0, 0.5])
_NEGATIVES = _grid([0.7, 0.1], [2.0, 2.0], [0.3, 1.0])

TRIPLET_LOSS = Exercise(
    name="triplet_loss",
    returns="one loss per triplet, a tensor of shape (m,)",
    expected=lambda anchor, positive, negative, alpha: reference.triplet_loss(anchor, positive, negative, alpha),
    cases=(
        Case("three triplets in 2-D, alpha = 0.2", (_ANCHORS, _POSITIVES, _NEGATIVES, 0.2)),
        Case("four triplets in 3-D, alpha = 0.5", (_random(8, 4, 3), _random(9, 4, 3), _random(10, 4, 3), 0.5)),
        Case("two triplets of all-equal encodings, alpha = 0.3",
             (torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3), 0.3)),
        Case("one triplet that meets the margin, alpha = 0.2",
             (_grid([0.0, 0.0]), _grid([0.5, 0.0]), _grid([0.0, 1.0]), 0.2)),
    ),
    mistakes=(
        Mistake("forgot_max", lambda a, p, n, alpha: _violations(a, p, n, alpha),
                "some of your losses are negative: you forgot the max with 0. A triplet that meets the margin "
                "has loss 0, not a reward: torch.clamp(d_ap - d_an + alpha, min=0)."),
        Mistake("min_not_max", lambda a, p, n, alpha: _violations(a, p, n, alpha).clamp(max=0),
                "you took the minimum with 0 where the loss needs the maximum: torch.clamp(..., min=0) or torch.relu."),
        Mistake("swapped_distances", lambda a, p, n, alpha: (-_violations(a, p, n, 0) + alpha).clamp(min=0),
                "d(A,P) and d(A,N) are swapped. The loss is max(d(A,P) - d(A,N) + alpha, 0): the positive's "
                "distance comes first."),
        Mistake("forgot_alpha", lambda a, p, n, alpha: _violations(a, p, n, 0).clamp(min=0),
                "the margin alpha is missing: max(d(A,P) - d(A,N) + alpha, 0). Without it, all-equal "
                "encodings get loss 0 and the network can cheat."),
        Mistake("alpha_subtracted", lambda a, p, n, alpha: _violations(a, p, n, -alpha).clamp(min=0),
                "alpha is subtracted; it must be added: max(d(A,P) - d(A,N) + alpha, 0)."),
        Mistake("not_squared", lambda a, p, n, alpha: _violations(a, p, n, alpha, "euclidean").clamp(min=0),
                "you used plain Euclidean distances. The course's d is the squared distance ||a - b||²: "
                "drop the square root."),
        Mistake("reduced_sum", lambda a, p, n, alpha: reference.triplet_loss(a, p, n, alpha, reduction="sum"),
                "you added the losses into one number. This exercise wants one loss per triplet, shape (m,); "
                "adding them up is the cost J of notebook 03."),
        Mistake("reduced_mean", lambda a, p, n, alpha: reference.triplet_loss(a, p, n, alpha, reduction="mean"),
                "you averaged the losses into one number. This exercise wants one loss per triplet, shape (m,)."),
        Mistake("sum_wrong_axis",
                lambda a, p, n, alpha: ((_diff(a, p) ** 2).sum(0) - (_diff(a, n) ** 2).sum(0) + alpha).clamp(min=0),
                "your distances add up over dim=0, across the triplets. Add up each row's coordinates: .sum(dim=1)."),
        Mistake("no_sum", lambda a, p, n, alpha: ((_diff(a, p) ** 2) - (_diff(a, n) ** 2) + alpha).clamp(min=0),
                "the squared differences were never added up over the coordinates; use .sum(dim=1) for each distance."),
    ),
    error_hints=(
        ErrorHint("builtin_max", "Boolean value of Tensor with more than one value is ambiguous",
                  "Python's built-in max(x, 0) (or an `if x > 0`) works on one number at a time. For a whole "
                  "tensor of triplets use torch.clamp(x, min=0) or torch.relu(x)."),
        ErrorHint("in_place_on_input", "a leaf Variable that requires grad is being used in an in-place operation",
                  "an in-place operation (such as anchor -= positive) changes an input. Compute new tensors instead."),
    ),
)


def check_triplet_loss(function) -> CheckResult:
    """Check a learner's triplet_loss(anchor, positive, negative, alpha): (m, d) x 3 -> (m,)."""
    return run_check(function, TRIPLET_LOSS)


# ---------------------------------------------------------------------------
# Notebook 03: the cost J, the sum of the losses of m triplets.


def _losses(a, p, n, alpha) -> torch.Tensor:
    return reference.triplet_loss(a, p, n, alpha)


COST = Exercise(
    name="cost",
    returns="the cost J as one number, a 0-d tensor",
    expected=lambda a, p, n, alpha: reference.triplet_loss(a, p, n, alpha, reduction="sum"),
    cases=(
        Case("three triplets in 2-D, two of them violated, alpha = 0.2", (_ANCHORS, _POSITIVES, _NEGATIVES, 0.2)),
        Case("five triplets in 3-D, alpha = 0.5", (_random(11, 5, 3), _random(12, 5, 3), _random(13, 5, 3), 0.5)),
        Case("four triplets of all-equal encodings, alpha = 0.3",
             (torch.ones(4, 2), torch.ones(4, 2), torch.ones(4, 2), 0.3)),
    ),
    mistakes=(
        Mistake("one_element_shape", lambda a, p, n, alpha: _losses(a, p, n, alpha).sum().reshape(1),
                "your J has shape (1,); a 0-d tensor is expected. Start the sum from 0 rather than "
                "torch.zeros(1), or simply use losses.sum()."),
        Mistake("per_triplet", _losses,
                "you returned one loss per triplet. J adds them up into one number: .sum()."),
        Mistake("mean_not_sum", lambda a, p, n, alpha: _losses(a, p, n, alpha).mean(),
                "you returned the mean J / m. This exercise asks for the sum J = L_1 + ... + L_m (the mean "
                "is another common choice, compared later in this notebook)."),
        Mistake("mean_over_nonzero",
                lambda a, p, n, alpha: _losses(a, p, n, alpha).sum() / (_losses(a, p, n, alpha) > 0).sum().clamp(min=1),
                "you averaged over the non-zero losses only. This exercise asks for the plain sum J."),
        Mistake("forgot_max", lambda a, p, n, alpha: _violations(a, p, n, alpha).sum(),
                "you added d(A,P) - d(A,N) + alpha without the max with 0, so triplets that meet the margin "
                "subtract from J. Clamp each triplet's loss at 0 first, then add."),
        Mistake("max_after_sum", lambda a, p, n, alpha: _violations(a, p, n, alpha).sum().clamp(min=0),
                "you took the max with 0 after adding everything up. Each triplet gets its own max: "
                "clamp the (m,) losses first, then .sum()."),
        Mistake("skipped_first", lambda a, p, n, alpha: _losses(a, p, n, alpha)[1:].sum(),
                "the first triplet (row 0) is left out. The maths counts i = 1..m; Python numbers the same m "
                "rows 0..m-1, so loop over range(m) (or just use .sum())."),
        Mistake("skipped_last", lambda a, p, n, alpha: _losses(a, p, n, alpha)[:-1].sum(),
                "the last triplet is left out: range(m - 1) stops one row early. range(m) visits all m rows."),
        Mistake("not_squared", lambda a, p, n, alpha: _violations(a, p, n, alpha, "euclidean").clamp(min=0).sum(),
                "you used plain Euclidean distances. The course's d is the squared distance ||a - b||²."),
        Mistake("swapped_distances", lambda a, p, n, alpha: (-_violations(a, p, n, 0) + alpha).clamp(min=0).sum(),
                "d(A,P) and d(A,N) are swapped: each loss is max(d(A,P) - d(A,N) + alpha, 0)."),
        Mistake("forgot_alpha", lambda a, p, n, alpha: _violations(a, p, n, 0).clamp(min=0).sum(),
                "the margin alpha is missing from each loss: max(d(A,P) - d(A,N) + alpha, 0)."),
    ),
    error_hints=(
        ErrorHint("index_past_end", "out of bounds",
                  "your loop goes one row too far. The write-up's i = 0..m would count m + 1 triplets; "
                  "there are only m, which Python numbers 0..m-1: loop over range(m)."),
        ErrorHint("builtin_max", "Boolean value of Tensor with more than one value is ambiguous",
                  "Python's built-in max(x, 0) works on one number at a time. For a tensor of losses use "
                  "torch.clamp(x, min=0) or torch.relu(x)."),
        ErrorHint("in_place_on_input", "a leaf Variable that requires grad is being used in an in-place operation",
                  "an in-place operation changes an input tensor. Compute new tensors instead."),
    ),
)


def check_cost(function) -> CheckResult:
    """Check a learner's cost(anchor, positive, negative, alpha): (m, d) x 3 -> 0-d tensor J."""
    return run_check(function, COST)


# ---------------------------------------------------------------------------
# Notebook 03: the mean over the active triplets, 0 (not NaN) when none is active.

NONE_ACTIVE_CASE = Case("five losses, all 0: no triplet is active", (torch.zeros(5),))


def _nan_free_gradient(function, exercise: Exercise) -> CheckResult | None:
    """Fail when the answer is right where no triplet is active but its gradient there is NaN."""
    answers = collect_answers(function, replace(exercise, cases=(NONE_ACTIVE_CASE,)), requires_grad=True)
    if isinstance(answers, CheckResult):
        return answers
    (losses,) = _fresh_copies(NONE_ACTIVE_CASE.args, requires_grad=True)
    answer = function(losses)
    (gradient,) = torch.autograd.grad(answer, losses, allow_unused=True)
    if gradient is None or bool(torch.isfinite(gradient).all()):
        return None
    return _fail(
        exercise, f"returns 0 on the test case \"{NONE_ACTIVE_CASE.description}\", but its gradient there is nan.",
        "  Training calls .backward() on every batch, and one nan in a gradient turns every weight into nan.\n"
        "  Hint: torch.where(count > 0, total / count, 0) still computes total / count = 0 / 0, and its gradient "
        "is nan even though the forward value is not used. Divide by a count that cannot be 0 instead: "
        "total / count.clamp(min=1).", "nan_gradient")


def _active_mean(losses: torch.Tensor) -> torch.Tensor:
    """The mean of the positive losses, nan when there are none (what losses[losses > 0].mean() gives)."""
    losses = losses.double()
    return losses[losses > 0].mean()


MEAN_OVER_ACTIVE = Exercise(
    name="mean_over_active",
    returns="the mean of the positive losses as one number, a 0-d tensor (0 when no loss is positive)",
    expected=reference.mean_over_active,
    cases=(
        Case("four losses, three of them positive", (_grid(0.2, 0.12, 0.0, 0.95),)),
        Case("six losses, two of them positive", (_grid(0.0, 0.5, 0.0, 0.0, 0.1, 0.0),)),
        NONE_ACTIVE_CASE,
        Case("three losses, all positive", (_grid(0.3, 0.1, 0.2),)),
    ),
    mistakes=(
        Mistake("nan_when_none_active", _active_mean,
                "when no triplet is active your answer is nan: the mean of an empty selection is 0 / 0. Late in "
                "training most batches look like this, and a nan loss turns every weight into nan. Return 0 then: "
                "divide the sum by the number of active triplets clamped at 1, count.clamp(min=1)."),
        Mistake("mean_over_all", lambda losses: losses.double().mean(),
                "you divided by all m triplets, the inactive ones included: that is the plain mean J / m. Divide "
                "the sum by the number of triplets whose loss is positive, (losses > 0).sum()."),
        Mistake("sum_not_mean", lambda losses: losses.double().sum(),
                "you returned the sum J. Divide it by the number of active triplets, (losses > 0).sum()."),
        Mistake("count_not_mean", lambda losses: (losses > 0).sum().double(),
                "you returned how many triplets are active. The exercise wants the mean of their losses: "
                "the sum of the losses divided by that count."),
        Mistake("mean_over_inactive",
                lambda losses: losses.double().sum() / (losses == 0).sum().clamp(min=1),
                "you divided by the number of triplets whose loss is 0. Count the active ones, whose loss "
                "is positive: (losses > 0).sum()."),
    ),
    error_hints=(
        ErrorHint("builtin_max", "Boolean value of Tensor with more than one value is ambiguous",
                  "an `if` on a whole tensor (such as `if losses > 0:`) is ambiguous. Select with a mask, "
                  "losses[losses > 0], or count with (losses > 0).sum()."),
        ErrorHint("in_place_on_input", "a leaf Variable that requires grad is being used in an in-place operation",
                  "an in-place operation changes the input losses. Compute new tensors instead."),
    ),
    after_cases=(_nan_free_gradient,),
)


def check_mean_over_active(function) -> CheckResult:
    """Check a learner's mean_over_active(losses): (m,) -> 0-d tensor, the mean of the positive losses.

    Beyond the numbers it asks for 0 (not nan) when no loss is positive, and a gradient without nan there.
    """
    return run_check(function, MEAN_OVER_ACTIVE)
