"""Hidden test cases of the exercises, run when an instructor grades a class: edge cases the visible
checks lack and random cases drawn from the instructor's seed, each judged by the visible check's runner.
A hidden test cell calls ``grade("distance_matrix", globals().get("distance_matrix"), points=3, seed=123456)``;
nbgrader takes the number it returns as partial credit. Nothing here imports nbgrader.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import warnings
from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

import torch
from torch import nn

from course_utils.checks.basics import DISTANCE_MATRIX, MEAN_OVER_ACTIVE, TRIPLET_LOSS
from course_utils.checks.runner import Case, CheckResult, Exercise, collect_answers, judge

# The MIME type of the result a hidden test cell displays (read back by course_instructor.grading).
RESULT_MIME = "application/vnd.course-utils.hidden-tests+json"
# Seconds one hidden case may run; after one runs past it the others are not run. HIDDEN_CASE_SECONDS overrides it.
CASE_SECONDS = 10.0


class HiddenCase(NamedTuple):
    """One hidden case: what it is in a few words, and judge(function) -> the checker's CheckResult."""

    description: str
    judge: Callable[[Callable], CheckResult]


class CaseOutcome(NamedTuple):
    """The verdict on one hidden case: passed or not, the checker's message and the named mistake."""

    description: str
    passed: bool
    message: str = ""
    mistake: str | None = None


@dataclass(frozen=True)
class Report:

    exercise: str
    points: float
    max_points: float
    outcomes: tuple[CaseOutcome, ...]

    @property
    def passed(self) -> int:
        return sum(outcome.passed for outcome in self.outcomes)

    def text(self) -> str:
        """A headline, then one line per case; each failure's message once (a stub gives the same for all)."""
        lines = [f"Hidden tests of {self.exercise}: {self.passed} of {len(self.outcomes)} cases passed, "
                 f"{self.points:g} of {self.max_points:g} points."]
        shown = set()
        for outcome in self.outcomes:
            lines.append(f"  {'passed' if outcome.passed else 'FAILED'}  {outcome.description}")
            if not outcome.passed and outcome.message and outcome.message not in shown:
                shown.add(outcome.message)
                lines.extend("      " + line for line in outcome.message.splitlines())
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"exercise": self.exercise, "points": self.points, "max_points": self.max_points, "passed": self.passed,
                "cases": [outcome._asdict() for outcome in self.outcomes]}


def report_from_json(data: str | dict) -> Report:
    data = json.loads(data) if isinstance(data, str) else data
    return Report(data["exercise"], float(data["points"]), float(data["max_points"]),
                  tuple(CaseOutcome(**case) for case in data["cases"]))


class CaseTimeout(BaseException):
    """A case ran past its time limit (a BaseException, so that learner code cannot catch it)."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise CaseTimeout after `seconds` (no limit off the main thread or without SIGALRM)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise CaseTimeout()

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _quiet():
    """Swallow prints and warnings: nbgrader gives a grade cell that writes to stderr 0 points."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _outcome(exercise: str, case: HiddenCase, function, seconds: float) -> CaseOutcome:
    """Judge one case; any learner exception fails it, but the time limits' interrupts go through."""
    try:
        with _quiet(), _time_limit(seconds):
            verdict = case.judge(function)
    except (KeyboardInterrupt, CaseTimeout):
        raise
    except BaseException as error:  # noqa: BLE001 - SystemExit and the like from learner code
        return CaseOutcome(case.description, False, f"{exercise} raised {type(error).__name__}: {error}", "raised")
    return CaseOutcome(case.description, bool(verdict.passed), "" if verdict.passed else verdict.message,
                       verdict.mistake)


def run_hidden_cases(exercise: str, function, seed: int, points: float, case_seconds: float = CASE_SECONDS) -> Report:
    """Run the hidden cases of an exercise on a learner's function (None when the notebook lacks it).

    Returns:
        The report; points earned = points x passed / cases. After a case times out the rest are not run.
    """
    cases, outcomes, stopped = hidden_cases(exercise, seed), [], None
    for case in cases:
        if not callable(function):
            why = ("is not defined: its solution cell was deleted, renamed or never ran" if function is None
                   else f"is a {type(function).__name__}, not a function")
            outcomes.append(CaseOutcome(case.description, False, f"{exercise} {why}, so none of its hidden cases "
                                        "could run.", "not_defined"))
        elif stopped is not None:
            outcomes.append(CaseOutcome(case.description, False, f"not run: {exercise} did not finish the case "
                                        f"\"{stopped}\" within {case_seconds:g} s.", "not_run"))
        else:
            try:
                outcomes.append(_outcome(exercise, case, function, case_seconds))
            except CaseTimeout:
                stopped = case.description
                outcomes.append(CaseOutcome(case.description, False, f"{exercise} did not finish within "
                                            f"{case_seconds:g} s on this case (an endless loop, or far too slow).",
                                            "timeout"))
    earned = round(float(points) * sum(o.passed for o in outcomes) / len(outcomes), 2)
    return Report(exercise, earned, float(points), tuple(outcomes))


def grade(exercise: str, function, points: float, seed: int) -> float:
    """What a hidden test cell calls: display the report (text, and RESULT_MIME JSON for the grader);
    return the points earned."""
    seconds = float(os.environ.get("HIDDEN_CASE_SECONDS", CASE_SECONDS))
    report = run_hidden_cases(exercise, function, seed, points, seconds)
    try:
        from IPython.display import display
    except ImportError:  # outside IPython: plain text
        print(report.text())
    else:
        display({"text/plain": report.text(), RESULT_MIME: report.to_json()}, raw=True)
    return report.points


# Building the cases.


def _generator(seed: int, salt: int) -> torch.Generator:
    """The instructor's seed mixed with a number per exercise."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + salt) % (2**63 - 1))


def _tenths(generator: torch.Generator, *shape: int, low: int = -20, high: int = 20) -> torch.Tensor:
    return torch.randint(low, high + 1, shape, generator=generator).float() / 10


def _quarters(generator: torch.Generator, *shape: int, low: int = -8, high: int = 8) -> torch.Tensor:
    """Random float32 multiples of 1/4: their squares and sums are exact in float32, so ties stay ties."""
    return torch.randint(low, high + 1, shape, generator=generator).float() / 4


def _grid(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def _checked(exercise: Exercise, *cases: Case, after_cases: tuple = ()) -> tuple[HiddenCase, ...]:
    """Hidden cases judged like the visible check's cases, followed by the given checks of its `after_cases`."""
    return tuple(HiddenCase(case.description, lambda function, case=case: judge(
        function, replace(exercise, cases=(case,), after_cases=after_cases))) for case in cases)


# Notebook 01: distance_matrix.


def _distance_matrix_cases(seed: int) -> tuple[HiddenCase, ...]:
    g = _generator(seed, 1)
    three = _tenths(g, 3, 4)
    no_negative, no_loop = DISTANCE_MATRIX.after_cases
    return (
        *_checked(DISTANCE_MATRIX,
                  Case("seven random points in 3-D", (_tenths(g, 7, 3),)),
                  Case("a single point in 5-D", (_tenths(g, 1, 5),)),
                  Case("six points on a line (1-D)", (_tenths(g, 6, 1),)),
                  Case("four points in 4-D, three of them equal",
                       (torch.cat([three[:1], three[:1], three[:1], three[1:2]]),)),
                  Case("twenty random points in 2-D", (_tenths(g, 20, 2),))),
        # The visible check's clamp and loop tests, after a hidden case (a looked-up answer fails that first).
        *_checked(DISTANCE_MATRIX, Case("30 random points in 8-D, then no negative distance on large coordinates",
                                        (_tenths(g, 30, 8),)), after_cases=(no_negative,)),
        *_checked(DISTANCE_MATRIX, Case("150 random points in 4-D, then no Python loop", (_tenths(g, 150, 4),)),
                  after_cases=(no_loop,)),
    )


# Notebooks 02 and 03: triplet_loss and mean_over_active.


def _triplet_loss_cases(seed: int) -> tuple[HiddenCase, ...]:
    g = _generator(seed, 2)
    same = _tenths(g, 3, 4)
    return _checked(
        TRIPLET_LOSS,
        Case("six random triplets in 5-D, alpha = 0.35", (_tenths(g, 6, 5), _tenths(g, 6, 5), _tenths(g, 6, 5), 0.35)),
        Case("one triplet in 1-D, alpha = 1.0", (_tenths(g, 1, 1), _tenths(g, 1, 1), _tenths(g, 1, 1), 1.0)),
        Case("a tie d(A,P) = d(A,N) and alpha = 0 (loss 0)",
             (_grid([0.0, 0.0]), _grid([1.0, 0.0]), _grid([0.0, -1.0]), 0.0)),
        Case("five triplets in 2-D, a large margin alpha = 2.0",
             (_tenths(g, 5, 2), _tenths(g, 5, 2), _tenths(g, 5, 2), 2.0)),
        Case("ten random triplets in 3-D, many meeting the margin, alpha = 0.2",
             (_tenths(g, 10, 3, low=-5, high=5), _tenths(g, 10, 3, low=-5, high=5), _tenths(g, 10, 3), 0.2)),
        Case("three triplets whose positive is the anchor itself, alpha = 0.5",
             (same, same.clone(), _tenths(g, 3, 4), 0.5)),
    )


def _mean_over_active_cases(seed: int) -> tuple[HiddenCase, ...]:
    g = _generator(seed, 3)
    mixed = _tenths(g, 8, low=0, high=12) * (torch.rand(8, generator=g) < 0.6)
    mixed[0], mixed[1] = 0.0, 0.4  # at least one inactive and one active triplet
    many = torch.rand(50, generator=g) * (torch.rand(50, generator=g) < 0.5)
    many[0] = 0.5
    return (
        *_checked(MEAN_OVER_ACTIVE, Case("eight random losses, some of them 0", (mixed,)),
                  Case("one loss, positive", (_grid(0.7),))),
        *_checked(MEAN_OVER_ACTIVE, Case("one loss, 0: no triplet is active", (torch.zeros(1),)),
                  Case("three losses, all 0", (torch.zeros(3),)), after_cases=MEAN_OVER_ACTIVE.after_cases),
        *_checked(MEAN_OVER_ACTIVE, Case("fifty random losses, about half of them 0", (many,)),
                  Case("four losses, two of them large", (_grid(3.5, 0.0, 0.0, 10.25),))),
    )


# Notebooks 04 and 05: the valid-triplet mask and the semi-hard mask.


def _valid_triplet_mask_cases(seed: int) -> tuple[HiddenCase, ...]:
    from course_utils.checks.masks import VALID_TRIPLET_MASK

    g = _generator(seed, 4)
    persons = torch.tensor([101, 205, 307])
    shuffled = persons[torch.randint(0, 3, (8,), generator=g)]
    shuffled[:3] = persons  # every person appears
    shuffled[3] = shuffled[0]  # and one has two pictures
    return _checked(
        VALID_TRIPLET_MASK,
        Case("eight pictures of three persons with ids 101, 205 and 307, shuffled", (shuffled,)),
        Case("four pictures of one person: no negative, no triplet", (torch.tensor([6, 6, 6, 6]),)),
        Case("a single picture", (torch.tensor([3]),)),
        Case("two pictures of person 2 and one of person 9, labels [2, 9, 2]", (torch.tensor([2, 9, 2]),)),
        Case("negative ids, labels [-1, 4, -1, 4, 4]", (torch.tensor([-1, 4, -1, 4, 4]),)),
    )


def _line(*positions: float) -> torch.Tensor:
    x = torch.tensor(positions)
    return (x.unsqueeze(1) - x.unsqueeze(0)).abs()


def _semihard_mask_cases(seed: int) -> tuple[HiddenCase, ...]:
    from course_utils.checks.masks import SEMIHARD_MASK

    g = _generator(seed, 5)
    points = torch.randint(-3, 4, (10, 2), generator=g).float()
    grid = (points.unsqueeze(1) - points.unsqueeze(0)).pow(2).sum(dim=2)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    edges = _line(0, 0.5, 0.25, 0.5, 0.75, -0.625, 1.0)  # pair at 0.5; negatives at 0.25, 0.5, 0.75 (edge), 0.625, 1
    return _checked(
        SEMIHARD_MASK,
        Case("10 pictures of 4 persons at integer points, squared distances with ties, alpha = 3", (grid, labels, 3.0)),
        Case("pair at distance 0.5; negatives at 0.25, 0.5 (a tie), 0.625, 0.75 (the edge) and 1; alpha = 0.25",
             (edges, torch.tensor([0, 0, 1, 2, 3, 4, 5]), 0.25)),
        Case("the same 10 pictures with alpha = 0: no triplet is semi-hard", (grid, labels, 0.0)),
        Case("the same 10 pictures with a huge alpha = 100", (grid, labels, 100.0)),
        Case("two pictures of two persons: no positive pair", (_line(0, 1), torch.tensor([7, 8]), 1.0)),
    )


# Notebook 06: training_step.


def _training_scenario(seed: int, salt: int, hidden: int, activation, optimizer_kind: str, mining: str,
                       persons: int, pictures: int, steps: int):
    """A small network with stale gradients, its optimiser, a loss and a few P x K batches."""
    from course_utils.core.losses import TripletLoss

    g = _generator(seed, salt)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, hidden), activation, nn.Linear(hidden, 3))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=g) * 0.5)
            parameter.grad = torch.full_like(parameter, 0.25)  # left over from an "earlier step"
    if optimizer_kind == "momentum":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.01)
    labels = torch.arange(persons).repeat_interleave(pictures)
    batches = [(torch.rand(len(labels), 2, 2, 2, generator=g), labels) for _ in range(steps)]
    return model, optimizer, TripletLoss(alpha=0.3, mining=mining), batches


def _training_case(description: str, scenario) -> HiddenCase:
    from course_utils.checks.training import training_step_exercise

    exercise = training_step_exercise(description, scenario)
    return HiddenCase(description, lambda function: judge(function, exercise))


def _training_step_cases(seed: int) -> tuple[HiddenCase, ...]:
    return (
        _training_case("a network with tanh, SGD with momentum, batch-all loss, three batches of 4 persons x 2",
                       lambda: _training_scenario(seed, 61, 6, nn.Tanh(), "momentum", "all", 4, 2, 3)),
        _training_case("a network with ReLU, SGD with weight decay, batch-hard loss, two batches of 3 persons x 3",
                       lambda: _training_scenario(seed, 62, 5, nn.ReLU(), "decay", "hard", 3, 3, 2)),
        _training_case("one batch of 2 persons x 4, semi-hard loss",
                       lambda: _training_scenario(seed, 63, 4, nn.Tanh(), "decay", "semihard", 2, 4, 1)),
    )


# Notebooks 07 and 08: verify, error_rates and name_the_failure.


def _verify_cases(seed: int) -> tuple[HiddenCase, ...]:
    from course_utils.checks.recognition import VERIFY

    g = _generator(seed, 7)
    a, b = _quarters(g, 5, 4), _quarters(g, 5, 4)
    at_threshold = float(((a[2] - b[2]) ** 2).sum())  # pair 2 lies exactly on the threshold
    one_a = _quarters(g, 6)
    return _checked(
        VERIFY,
        Case(f"five pairs in 4-D, threshold {at_threshold:g} (one pair exactly on it)", (a, b, at_threshold)),
        Case("one pair of equal encodings in 6-D, threshold 0", (one_a, one_a.clone(), 0.0)),
        Case("one pair far apart in 6-D, threshold 0.5", (one_a, one_a + 2.0, 0.5)),
        Case("n = 1 pair given as (1, 3) tensors, threshold 1.5", (_quarters(g, 1, 3), _quarters(g, 1, 3), 1.5)),
        Case("eight pairs with long encodings (not unit length), threshold 20",
             (_quarters(g, 8, 3, low=-16, high=16), _quarters(g, 8, 3, low=-16, high=16), 20.0)),
    )


def _error_rates_cases(seed: int) -> tuple[HiddenCase, ...]:
    from course_utils.checks.recognition import ERROR_RATES

    g = _generator(seed, 8)

    def eighths(count: int, low: int, high: int) -> torch.Tensor:
        return torch.randint(low, high + 1, (count,), generator=g).float() / 8

    same, different = eighths(4, 0, 12), eighths(8, 6, 24)
    thresholds = torch.cat([same[:2], different[:1], eighths(2, 0, 24)])  # some exactly on a distance
    many_same, many_different = eighths(16, 0, 16), eighths(64, 8, 32)
    many_thresholds = eighths(40, 0, 32)
    return _checked(
        ERROR_RATES,
        Case("4 same-person and 8 different-person distances, 5 thresholds, some exactly on a distance",
             (same, different, thresholds)),
        Case("8 same-person and 4 different-person distances, 3 thresholds",
             (eighths(8, 0, 16), eighths(4, 8, 24), torch.tensor([0.5, 1.25, 2.0]))),
        Case("one threshold, 1 same-person and 2 different-person distances",
             (torch.tensor([0.75]), torch.tensor([0.5, 2.0]), torch.tensor([1.0]))),
        Case("thresholds in decreasing order", (same, different, torch.tensor([3.0, 1.5, 1.0, 0.25]))),
        Case("16 same-person and 64 different-person random distances, 40 thresholds",
             (many_same, many_different, many_thresholds)),
    )


def _name_the_failure_cases(seed: int) -> tuple[HiddenCase, ...]:
    from course_utils.checks.diagnosis import EXERCISE, _history

    g = _generator(seed, 9)
    alpha = round(0.1 + 0.8 * float(torch.rand((), generator=g)), 2)
    falling = [round(alpha * (1 - 0.15 * step), 3) for step in range(5)]
    inf, nan = float("inf"), float("nan")
    everything = replace(EXERCISE, cases=tuple(Case(description, tuple(args)) for description, *args in [
        (f"a learning run with alpha = {alpha}",
         _history(falling, [0.8, 0.6, 0.5, 0.4, 0.3], 0.2, [1.0, 1.3, 1.6, 1.9, 2.2]), alpha),
        (f"a run that collapsed, alpha = {alpha}",
         _history([alpha * 0.9, alpha, alpha, alpha, alpha], 1.0, [0.3, 0.01, 0.0, 0.0, 0.0],
                  [0.9, 0.05 * alpha, 0.01 * alpha, 0.0, 0.0]), alpha),
        ("a run whose encoding length became infinite at the last step",
         _history([0.15, 0.1, 0.08], 0.4, 0.2, 1.0, [1.0, 1.0, inf]), 0.2),
        ("a learning run without triplets on exactly half (3 of 6) of its steps",
         _history([0.0, 0.15, 0.0, 0.1, 0.0, 0.07], [None, 0.5, None, 0.4, None, 0.3],
                  [None, 0.3, None, 0.2, None, 0.2], [None, 1.2, None, 1.5, None, 1.8]), 0.2),
        ("a learning run without triplets on 1 of its 5 steps",
         _history([0.2, 0.0, 0.12, 0.1, 0.06], [0.7, None, 0.5, 0.4, 0.3], [0.3, None, 0.3, 0.2, 0.2],
                  [1.0, None, 1.4, 1.6, 1.9]), 0.25),
        ("a single record, without triplets", _history([0.0], [None], [None], [None]), 0.2),
        ("alpha = 4 exactly, on unit vectors", _history([3.2, 3.1, 3.0], 1.0, 0.2, 1.2), 4.0),
        ("alpha = 6 on encodings of length 1.0004", _history([4.5, 4.4, 4.4], 1.0, 0.3, 1.9, 1.0004), 6.0),
        ("alpha = 6 on encodings of length 2 whose loss fell",
         _history([5.0, 3.0, 2.0, 1.0], [1.0, 0.7, 0.5, 0.3], 0.5, [1.5, 3.5, 4.5, 5.5], 2.0), 6.0),
        ("a run that looked collapsed at its first step and then learned",
         _history([0.2, 0.15, 0.1, 0.05], [1.0, 0.6, 0.4, 0.2], [0.0, 0.2, 0.2, 0.2], [0.0, 0.9, 1.4, 1.9]), 0.2),
        ("a run whose loss stayed at alpha = 1 while d(A,N) stayed large",
         _history([1.0, 1.0, 0.98, 0.97], [0.9, 0.5, 0.3, 0.2], 2.0, [2.5, 2.8, 3.0, 3.2]), 1.0),
        ("a run with no triplets on most steps that turned nan",
         _history([0.0, 0.0, 0.0, 0.1, nan], [None, None, None, 0.4, None], [None, None, None, 0.2, nan],
                  [None, None, None, 1.1, nan], [1.0, 1.0, 1.0, 1.0, nan]), 0.2),
    ]), after_cases=())
    return tuple(_named_run(everything, number) for number in range(len(everything.cases)))


def _named_run(everything: Exercise, number: int) -> HiddenCase:
    """Hidden case `number` of name_the_failure; a wrong name is explained by the learner's answers on all cases."""
    one = replace(everything, cases=(everything.cases[number],))

    def judge_case(function) -> CheckResult:
        def explain(exercise, _, answers, expected):
            every = collect_answers(function, everything, requires_grad=False)
            if isinstance(every, CheckResult):  # another case raised: explain this one alone
                return everything.explain(exercise, 0, answers, expected)
            return everything.explain(everything, number, every, expected)

        return judge(function, replace(one, explain=explain))

    return HiddenCase(one.cases[0].description, judge_case)


# The builders of each exercise's hidden cases from the instructor's seed, and its default points.
EXERCISES: dict[str, Callable[[int], tuple[HiddenCase, ...]]] = {
    "distance_matrix": _distance_matrix_cases,
    "triplet_loss": _triplet_loss_cases,
    "mean_over_active": _mean_over_active_cases,
    "valid_triplet_mask": _valid_triplet_mask_cases,
    "semihard_mask": _semihard_mask_cases,
    "training_step": _training_step_cases,
    "verify": _verify_cases,
    "error_rates": _error_rates_cases,
    "name_the_failure": _name_the_failure_cases,
}
DEFAULT_POINTS = {"distance_matrix": 3, "triplet_loss": 2, "mean_over_active": 2, "valid_triplet_mask": 2,
                  "semihard_mask": 3, "training_step": 3, "verify": 2, "error_rates": 3, "name_the_failure": 3}


def hidden_cases(exercise: str, seed: int) -> tuple[HiddenCase, ...]:
    """The hidden cases of an exercise for a seed (always the same for the same seed)."""
    if exercise not in EXERCISES:
        raise KeyError(f"no hidden tests for the exercise {exercise!r}; known: {', '.join(EXERCISES)}. "
                       "Add its cases to course_instructor/hidden_tests.py.")
    return EXERCISES[exercise](int(seed))
