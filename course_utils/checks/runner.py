"""The one runner behind every exercise check: `run_check` calls the learner's function on an
`Exercise`'s cases, compares each answer with `course_utils.core.reference` and explains a wrong one
by the typical `Mistake` that reproduces it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from course_utils.core import reference

# Learners compute in float32; answers are compared in float64 with float32-sized tolerances.
RELATIVE_TOLERANCE = 1e-4
ABSOLUTE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check, true when passed; `mistake` names what went wrong ("forgot_max", ...), if known."""

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
    """A few words a learner recognises, and the arguments (tensors are copied for each call)."""

    description: str
    args: tuple


@dataclass(frozen=True)
class Mistake:
    """A typical mistake: its name, what the mistaken code returns for a case's arguments, and the hint."""

    name: str
    compute: Callable
    hint: str


@dataclass(frozen=True)
class ErrorHint:
    """Advice for an exception whose message contains `phrase`."""

    name: str
    phrase: str
    hint: str


def grid(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def row_distances(a: torch.Tensor, b: torch.Tensor, metric: str = "squared_euclidean") -> torch.Tensor:
    """float64 d(a, b) of one pair of vectors (0-d), or of each pair of rows ((n,)), by the reference's definition."""
    if a.dim() == 1:
        return reference.distance(a, b, metric)
    return torch.stack([reference.distance(x, y, metric) for x, y in zip(a, b)])


def show_value(value) -> str:
    """Short text for a tensor or number: up to 6 values to 4 decimals, and the shape."""
    if not isinstance(value, torch.Tensor):
        return repr(value)
    if value.dtype == torch.bool:
        return str(value.tolist())
    numbers = value.detach().double().flatten()
    shown = ", ".join(f"{v:.4f}" for v in numbers[:6].tolist())
    if value.dim() == 0:
        return f"tensor({shown}) (a 0-d tensor, shape ())"
    return f"[{shown}{', ...' if numbers.numel() > 6 else ''}] (shape {tuple(value.shape)})"


def show_pair(answer, expected, args=()) -> str:
    return f"    your answer: {show_value(answer)}\n    expected:    {show_value(expected)}"


def tensors_match(answer, target: torch.Tensor) -> bool:
    """Same shape and numbers up to float32 round-off (nan matches nan, so a mistake giving nan is recognised)."""
    return (isinstance(answer, torch.Tensor) and answer.shape == target.shape
            and bool(torch.allclose(answer.detach().double(), target.double(), rtol=RELATIVE_TOLERANCE,
                                    atol=ABSOLUTE_TOLERANCE, equal_nan=True)))


def masks_match(answer, target: torch.Tensor) -> bool:
    return (isinstance(answer, torch.Tensor) and answer.dtype == torch.bool and answer.shape == target.shape
            and bool(torch.equal(answer.cpu(), target)))


def fail(exercise: Exercise, headline: str, details: str, mistake: str | None) -> CheckResult:
    return CheckResult(exercise.name, False, f"Not yet: {exercise.name} {headline}\n{details}", mistake)


def returned_none(exercise: Exercise, case: Case, statement: str = "`return` statement") -> CheckResult:
    return fail(exercise, f"returned None on the test case \"{case.description}\".",
                f"  Hint: did you forget the {statement} at the end of the function?", "returned_none")


def float_tensor_form(exercise: Exercise, case: Case, answer, expected: torch.Tensor) -> CheckResult | None:
    """Why the answer is not a floating-point tensor; None when it is."""
    where = f"on the test case \"{case.description}\""
    if answer is None:
        return returned_none(exercise, case)
    if isinstance(answer, (bool, int, float)):
        same = expected.dim() == 0 and tensors_match(torch.tensor(float(answer)), expected)
        zero_note = (" Where the answer is 0, return a 0 that is still a tensor computed from the inputs, "
                     "such as x.sum() * 0." if answer == 0 else "")
        return fail(
            exercise, f"returned a Python {type(answer).__name__} ({answer!r}) {where}, not a torch tensor.",
            f"  Expected {exercise.returns}.{' The value is right; only its type is wrong.' if same else ''}\n"
            "  Hint: a Python number has no gradient, so training could not learn from it. Keep the result a "
            "tensor: don't call .item() or float(), and use torch.clamp(x, min=0) (or torch.relu) rather than "
            f"Python's built-in max(x, 0).{zero_note}", "python_number")
    if not isinstance(answer, torch.Tensor):
        return fail(exercise, f"returned a {type(answer).__name__} {where}, not a torch tensor.",
                    f"  Expected {exercise.returns}.\n"
                    "  Hint: use torch operations on the input tensors all the way through (no NumPy, no lists).",
                    "not_a_tensor")
    if not answer.is_floating_point():
        return fail(exercise, f"returned a tensor of dtype {answer.dtype} {where}.",
                    f"  Expected {exercise.returns}, as floating-point numbers.\n"
                    "  Hint: distances and losses are real numbers; an integer or boolean result means a "
                    "comparison or a rounding crept in.", "not_floating")
    return None


@dataclass(frozen=True)
class Exercise:
    """Everything a check knows about one exercise.

    Attributes:
        returns: the answer in words ("one distance per row, shape (n,)").
        expected: the reference answer for a case's arguments.
        mistakes: most specific first.
        needs_gradient: float inputs require a gradient, and a tensor answer must keep its grad_fn.
        show: (answer, expected, case arguments) -> the lines showing a wrong answer.
        wrong_form: (exercise, case, answer, expected) -> a CheckResult for an answer of the wrong kind, or None.
        explain: (exercise, case number, answers, expected) -> a CheckResult tried before the mistakes, or None.
        after_cases: further checks once every case is right, (function, exercise) -> CheckResult or None.
        passed: what follows "Well done: <name> "; {count} counts cases and after_cases, {cases} the cases.
        call: runs the learner's function on a case's copied arguments; None calls it with them.
    """

    name: str
    returns: str
    expected: Callable
    cases: tuple[Case, ...]
    mistakes: tuple[Mistake, ...]
    error_hints: tuple[ErrorHint, ...] = ()
    needs_gradient: bool = True
    matches: Callable[[object, object], bool] = tensors_match
    show: Callable[..., str] = show_pair
    wrong_form: Callable[..., CheckResult | None] = float_tensor_form
    explain: Callable[..., CheckResult | None] | None = None
    shape_hint: str = ("Check which dimension you reduce (dim=1 adds up the coordinates of each row) "
                       "and whether you kept an extra dimension.")
    fallback_hint: str = "compute this case by hand, step by step, and compare with your code."
    after_cases: tuple[Callable[..., CheckResult | None], ...] = ()
    passed: str = "is correct on all {count} test cases."
    call: Callable | None = None


def describe_args(args: tuple) -> str:
    """"shape (3, 4), 0.2": tensors by their shape, other values as they are."""
    return ", ".join(f"shape {tuple(a.shape)}" if isinstance(a, torch.Tensor) else repr(a) for a in args)


def fresh_copies(args: tuple, requires_grad: bool) -> tuple:
    """Copies of the tensor arguments (only floating ones require a gradient), so no case changes another."""
    return tuple(a.detach().clone().requires_grad_(requires_grad and a.is_floating_point())
                 if isinstance(a, torch.Tensor) else a for a in args)


# Autograd refuses an in-place change of an input that requires a gradient, whatever the exercise.
IN_PLACE_ON_INPUT = ErrorHint("in_place_on_input", "a leaf Variable that requires grad is being used in an in-place "
                              "operation", "an in-place operation (such as a -= b) changes an input tensor. Compute a "
                              "new tensor instead: diff = a - b.")


def explain_exception(exercise: Exercise, case: Case, error: Exception) -> CheckResult:
    text = f"{type(error).__name__}: {error}"
    headline = f"raised an error on the test case \"{case.description}\"."
    for known in exercise.error_hints + (IN_PLACE_ON_INPUT,):
        if known.phrase in str(error):
            return fail(exercise, headline, f"  The error: {text}\n  Hint: {known.hint}", known.name)
    if not case.args:  # the check builds its own scenario (the training step): no arguments to show
        return fail(exercise, headline, f"  The error: {text}\n  Hint: call your function once in a new cell on the "
                    f"notebook's own objects to see the line that fails; it must return {exercise.returns}.", None)
    return fail(exercise, headline, f"  Arguments: {describe_args(case.args)}\n  The error: {text}\n"
                "  Hint: run your function on these arguments in a new cell to see where it fails.", None)


def collect_answers(function, exercise: Exercise, requires_grad: bool) -> list | CheckResult:
    """The learner's answer to every case, or the CheckResult that stops the check (a stub, an error, an
    in-place change of an input)."""
    answers = []
    for case in exercise.cases:
        inputs = fresh_copies(case.args, requires_grad)
        try:
            answers.append(function(*inputs) if exercise.call is None else exercise.call(function, *inputs))
        except NotImplementedError:
            return CheckResult(exercise.name, False, f"{exercise.name} is not implemented yet. Replace the line "
                               "`raise NotImplementedError()` with your code, run that cell, then run this check "
                               "again. No hurry: everything you need is in the text above.", "not_implemented")
        except Exception as error:  # noqa: BLE001 - any error in learner code is reported, not raised
            return explain_exception(exercise, case, error)
        if any(isinstance(a, torch.Tensor) and not torch.equal(a, b) for a, b in zip(inputs, case.args)):
            return fail(exercise, f"changed its input tensors on the test case \"{case.description}\".",
                        "  Hint: an in-place operation such as a -= b or x.clamp_(...) overwrote an argument; "
                        "compute a new tensor instead (diff = a - b).", "modified_input")
    return answers


def find_mistake(exercise: Exercise, failing: int, answers: list) -> Mistake | None:
    """The mistake that reproduces the answer to case `failing` (preferably every tensor answer), or None."""
    case, answer = exercise.cases[failing], answers[failing]
    explaining = [m for m in exercise.mistakes if exercise.matches(answer, m.compute(*case.args))]
    everywhere = [m for m in explaining
                  if all(exercise.matches(a, m.compute(*c.args))
                         for c, a in zip(exercise.cases, answers) if isinstance(a, torch.Tensor))]
    return (everywhere or explaining or [None])[0]


def shown_case(exercise: Exercise, case: Case, answer, expected) -> str:
    return (f"  Test case \"{case.description}\" (arguments: {describe_args(case.args)}):\n"
            f"{exercise.show(answer, expected, case.args)}")


def _explain_wrong_answer(exercise: Exercise, number: int, answers: list, expected) -> CheckResult:
    """Explain the wrong answer to case `number`: by the exercise's own test, a mistake, its shape, or the numbers."""
    if exercise.explain is not None:
        verdict = exercise.explain(exercise, number, answers, expected)
        if verdict is not None:
            return verdict
    case, answer = exercise.cases[number], answers[number]
    got = shown_case(exercise, case, answer, expected)
    found = find_mistake(exercise, number, answers)
    if found is not None:
        return fail(exercise, "gives a wrong answer.", f"{got}\n  Hint: {found.hint}", found.name)
    if isinstance(answer, torch.Tensor) and answer.shape != expected.shape:
        return fail(exercise, f"returns shape {tuple(answer.shape)} where {tuple(expected.shape)} is expected.",
                    f"{got}\n  Hint: it should return {exercise.returns}. {exercise.shape_hint}", "wrong_shape")
    return fail(exercise, "gives a wrong answer.", f"{got}\n  Hint: {exercise.fallback_hint}", None)


def judge(function, exercise: Exercise) -> CheckResult:
    """The verdict on a learner's function, not printed."""
    answers = collect_answers(function, exercise, exercise.needs_gradient)
    if isinstance(answers, CheckResult):
        return answers
    for number, (case, answer) in enumerate(zip(exercise.cases, answers)):
        expected = exercise.expected(*case.args)
        wrong = exercise.wrong_form(exercise, case, answer, expected)
        if wrong is not None:
            return wrong
        if not exercise.matches(answer, expected):
            return _explain_wrong_answer(exercise, number, answers, expected)
        if exercise.needs_gradient and isinstance(answer, torch.Tensor) and answer.grad_fn is None:
            return fail(exercise, "gives the right numbers, but detached from the autograd graph.",
                        f"  Test case \"{case.description}\": the answer has no grad_fn, so no gradient can "
                        "flow back to the encodings.\n  Hint: build the result with torch operations on "
                        "the inputs; torch.tensor(...), .detach(), .item() or .numpy() cut the graph.", "detached")
    for further_check in exercise.after_cases:
        verdict = further_check(function, exercise)
        if verdict is not None:
            return verdict
    count = len(exercise.cases) + len(exercise.after_cases)
    passed = exercise.passed.format(count=count, cases=len(exercise.cases))
    return CheckResult(exercise.name, True, f"Well done: {exercise.name} {passed}")


def run_check(function, exercise: Exercise) -> CheckResult:
    """Run a learner's function on every case of an exercise; print and return the verdict."""
    if not callable(function):
        raise TypeError(f"pass the function itself, for example check_{exercise.name}({exercise.name}) without "
                        f"parentheses after {exercise.name}; got a {type(function).__name__}.")
    result = judge(function, exercise)
    print(result.message)
    return result
