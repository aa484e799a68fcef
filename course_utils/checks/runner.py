"""The one runner behind every exercise check: `judge` calls a learner's function on an `Exercise`'s cases,
compares each answer with the exercise's slow expected answer (built on `course_utils.core.reference`) and
names the typical `Mistake` that reproduces a wrong one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from course_utils.core import reference

# Errors with a known cause, whatever the exercise: (phrase in the error message, mistake name, hint).
KNOWN_ERRORS = (
    ("Boolean value of Tensor with more than one value is ambiguous", "python_on_tensor",
     "Python's max(x, 0), `if`, `and` and `or` take one number; on tensors use torch.clamp(x, min=0), x <= t, &."),
    ("must match the size of tensor", "size_mismatch",
     "two tensors whose shapes do not broadcast were combined: print their shapes; add an axis with [:, None]."),
    ("a leaf Variable that requires grad is being used in an in-place operation", "in_place_on_input",
     "an in-place operation (such as a -= b) changes an input tensor: compute a new one, diff = a - b."),
    ("does not require grad", "detached",
     "the result is cut off from the autograd graph: no .detach(), .item(), torch.tensor(...) or torch.no_grad()."),
    ("", None, "run it on this test case's input in a new cell to see the line that fails."),  # any other error
)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check, true when passed; `mistake` names what went wrong ("forgot_max", ...), if known."""

    exercise: str
    passed: bool
    message: str
    mistake: str | None = None

    def __bool__(self) -> bool:
        return self.passed


# A test case: a few words a learner recognises, and the arguments (tensors are copied for each call).
Case = NamedTuple("Case", [("description", str), ("args", tuple)])
# A typical mistake: its name, what the mistaken code returns for a case's arguments, and the hint.
Mistake = NamedTuple("Mistake", [("name", str), ("compute", Callable), ("hint", str)])


def grid(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """float64 d(a, b) = ||a - b||² by `reference.distance`: of two vectors (0-d) or of each pair of rows ((n,))."""
    if a.dim() == 1:
        return reference.distance(a, b)
    return torch.stack([reference.distance(x, y) for x, y in zip(a, b)]) if len(a) else a.new_zeros(0).double()


def same(answer, expected) -> bool:
    """Equal answers: masks exactly, numbers up to float32 round-off (nan matches nan), tuples part by part."""
    if isinstance(expected, tuple):
        return isinstance(answer, tuple) and len(answer) == len(expected) and all(map(same, answer, expected))
    if not isinstance(expected, torch.Tensor):
        return answer == expected
    if not (isinstance(answer, torch.Tensor) and answer.shape == expected.shape):
        return False
    if expected.dtype == torch.bool:
        return answer.dtype == torch.bool and bool(torch.equal(answer.cpu(), expected))
    # Learners compute in float32: compared in float64 with float32-sized tolerances.
    return bool(torch.allclose(answer.detach().cpu().double(), expected.double(), rtol=1e-4, atol=1e-5, equal_nan=True))


def show_value(value) -> str:
    """Short text for an answer: up to 6 values to 4 decimals (a large mask: its True count) and the shape."""
    if isinstance(value, tuple):
        return ", ".join(map(show_value, value))
    if not isinstance(value, torch.Tensor):
        return repr(value)
    if value.dtype == torch.bool and value.numel() > 6:
        return f"{int(value.sum())} True of {value.numel()} entries (shape {tuple(value.shape)})"
    values = value.detach().flatten().tolist()
    shown = ", ".join(str(v) if isinstance(v, bool) else f"{v:.4f}" for v in values[:6])
    return f"[{shown}{', ...' if len(values) > 6 else ''}] (shape {tuple(value.shape)})"


def fail(name: str, headline: str, hint: str, mistake: str | None, shown: str = "") -> CheckResult:
    """A failed check: what is wrong in one line, the answer (`shown`, lines of its own) and one hint."""
    return CheckResult(name, False, f"Not yet: {name} {headline}\n{shown}  Hint: {hint}", mistake)


def wrong_form(exercise: Exercise, case: Case, answer, expected) -> CheckResult | None:
    """Why the answer is not a tensor (or tuple of tensors) of the expected kind; None when it is."""
    where = f"on the test case \"{case.description}\""
    if isinstance(expected, tuple):
        if not (isinstance(answer, tuple) and len(answer) == len(expected)):
            return fail(exercise.name, f"returned {show_value(answer)} {where}, not a tuple of {len(expected)}.",
                        f"return {exercise.returns}.", "not_a_tuple")
        parts = (wrong_form(exercise, case, a, e) for a, e in zip(answer, expected))
        return next((verdict for verdict in parts if verdict is not None), None)
    if not isinstance(expected, torch.Tensor):
        return None
    if not isinstance(answer, torch.Tensor):
        kind = "None (did you forget the `return`?)" if answer is None else f"a {type(answer).__name__}"
        return fail(exercise.name, f"returned {kind} {where}, not a torch tensor.",
                    f"return {exercise.returns}, built with torch operations on the inputs: no .item(), float(), "
                    "Python max, lists or NumPy (only a tensor can carry a gradient).", "not_a_tensor")
    if expected.dtype == torch.bool and answer.dtype != torch.bool:
        return fail(exercise.name, f"returned a tensor of dtype {answer.dtype} {where}, not a boolean mask.",
                    "combine comparisons with &, | and ~; multiplying them or .float() makes numbers.", "not_boolean")
    if expected.is_floating_point() and not answer.is_floating_point():
        return fail(exercise.name, f"returned a tensor of dtype {answer.dtype} {where}, not floating-point numbers.",
                    "an integer or boolean result means a count, a comparison or a rounding crept in.", "not_floating")
    return None


@dataclass(frozen=True)
class Exercise:
    """Everything a check knows about one exercise: `explain` is tried first on a wrong answer, `after_cases` run once
    every case is right, `call` runs the learner's function on a case's arguments; {count} counts both in `passed`."""

    name: str
    returns: str
    expected: Callable
    cases: tuple[Case, ...]
    mistakes: tuple[Mistake, ...] = ()
    needs_gradient: bool = True
    matches: Callable[[object, object], bool] = same
    explain: Callable[..., CheckResult | None] | None = None
    after_cases: tuple[Callable[..., CheckResult | None], ...] = ()
    passed: str = "is correct on all {count} test cases."
    call: Callable | None = None


def fresh_copies(args: tuple, requires_grad: bool) -> tuple:
    """Copies of the tensor arguments (only floating ones require a gradient), so no case changes another."""
    return tuple(a.detach().clone().requires_grad_(requires_grad and a.is_floating_point())
                 if isinstance(a, torch.Tensor) else a for a in args)


def explain_exception(exercise: Exercise, case: Case, error: Exception) -> CheckResult:
    _, name, hint = next(known for known in KNOWN_ERRORS if known[0] in str(error))
    return fail(exercise.name, f"raised an error on the test case \"{case.description}\".", hint, name,
                f"  The error: {type(error).__name__}: {error}\n")


def collect_answers(function, exercise: Exercise, requires_grad: bool) -> list | CheckResult:
    """The learner's answer to every case, or the CheckResult that stops the check (a stub, an error, ...)."""
    answers = []
    for case in exercise.cases:
        inputs = fresh_copies(case.args, requires_grad)
        try:
            answers.append(function(*inputs) if exercise.call is None else exercise.call(function, *inputs))
        except NotImplementedError:
            return CheckResult(exercise.name, False, f"{exercise.name} is not implemented yet: replace "
                               "`raise NotImplementedError()` with your code, run that cell, then this check again.",
                               "not_implemented")
        except Exception as error:  # noqa: BLE001 - any error in learner code is reported, not raised
            return explain_exception(exercise, case, error)
        if any(isinstance(a, torch.Tensor) and not torch.equal(a, b) for a, b in zip(inputs, case.args)):
            return fail(exercise.name, f"changed its input tensors on the test case \"{case.description}\".",
                        "an in-place operation such as a -= b or x.clamp_(...) overwrote an argument; compute a "
                        "new tensor instead (diff = a - b).", "modified_input")
    return answers


def explain_wrong_answer(exercise: Exercise, number: int, answers: list, expected) -> CheckResult:
    """Why the answer to case `number` is wrong: the exercise's own test, a known mistake, its form or shape."""
    case, answer = exercise.cases[number], answers[number]
    verdict = exercise.explain(exercise, number, answers, expected) if exercise.explain else None
    if verdict is not None:
        return verdict
    shown = (f"  Test case \"{case.description}\":\n    your answer: {show_value(answer)}\n"
             f"    expected:    {show_value(expected)}\n")
    reproduced = [m for m in exercise.mistakes if exercise.matches(answer, m.compute(*case.args))]
    everywhere = [m for m in reproduced if all(exercise.matches(a, m.compute(*c.args))  # every tensor answer
                                               for c, a in zip(exercise.cases, answers) if isinstance(a, torch.Tensor))]
    found = (everywhere + reproduced + [None])[0]
    if found is not None:
        return fail(exercise.name, "gives a wrong answer.", found.hint, found.name, shown)
    verdict = wrong_form(exercise, case, answer, expected)
    if verdict is not None:
        return verdict
    if isinstance(answer, torch.Tensor) and answer.shape != expected.shape:
        return fail(exercise.name, f"returns shape {tuple(answer.shape)} where {tuple(expected.shape)} is expected.",
                    f"it should return {exercise.returns}. Check which dimension you reduce, and any extra one.",
                    "wrong_shape", shown)
    return fail(exercise.name, "gives a wrong answer.", "compute this case by hand, step by step, and compare "
                "with your code.", None, shown)


def judge(function, exercise: Exercise) -> CheckResult:
    """The verdict on a learner's function, not printed."""
    answers = collect_answers(function, exercise, exercise.needs_gradient)
    if isinstance(answers, CheckResult):
        return answers
    for number, (case, answer) in enumerate(zip(exercise.cases, answers)):
        expected = exercise.expected(*case.args)
        if not exercise.matches(answer, expected):
            return explain_wrong_answer(exercise, number, answers, expected)
        if exercise.needs_gradient and isinstance(answer, torch.Tensor) and answer.grad_fn is None:
            return fail(exercise.name, f"gives the right numbers on the test case \"{case.description}\", but "
                        "cut off from the autograd graph.", "build the result with torch operations on the inputs; "
                        "torch.tensor(...), .detach(), .item() or .numpy() cut the graph.", "detached")
    for further_check in exercise.after_cases:
        verdict = further_check(function, exercise)
        if verdict is not None:
            return verdict
    count = len(exercise.cases) + len(exercise.after_cases)
    return CheckResult(exercise.name, True, f"Well done: {exercise.name} {exercise.passed.format(count=count)}")


def run_check(function, exercise: Exercise) -> CheckResult:
    """Run a learner's function on every case of an exercise; print and return the verdict."""
    if not callable(function):
        raise TypeError(f"pass the function itself, for example check_{exercise.name}({exercise.name}) without "
                        f"parentheses after {exercise.name}; got a {type(function).__name__}.")
    result = judge(function, exercise)
    print(result.message)
    return result
