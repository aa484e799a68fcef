"""Hidden test cases (edge cases, and random ones from the instructor's seed) judged by the visible checks'
runner. A hidden test cell calls ``grade("verify", globals().get("verify"), points=2, seed=123)``; nbgrader
takes the number it returns as partial credit. Nothing here imports nbgrader."""
from __future__ import annotations

import contextlib
import io
import sys
import warnings
from dataclasses import replace
from functools import partial
from typing import Callable

import torch
from torch import nn

from course_utils.checks.basics import DISTANCE_MATRIX, MEAN_OVER_ACTIVE, TRIPLET_LOSS
from course_utils.checks.diagnosis import EXERCISE, _history
from course_utils.checks.masks import SEMIHARD_MASK, VALID_TRIPLET_MASK
from course_utils.checks.recognition import ERROR_RATES, VERIFY
from course_utils.checks.runner import Case, CheckResult, Exercise, collect_answers, judge
from course_utils.checks.training import training_step_exercise
from course_utils.core import reference
from course_utils.core.losses import TripletLoss

# The MIME type of the report a hidden test cell displays (read back by course_instructor.grading).
RESULT_MIME = "application/vnd.course-utils.hidden-tests+json"


def _outcome(exercise: str, description: str, judge_case: Callable, function) -> dict:
    """One case's verdict, judged silently (nbgrader gives a grade cell that writes to stderr 0 points)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            verdict = judge_case(function) if callable(function) else CheckResult(
                exercise, False, f"{exercise} is not defined (its solution cell was deleted, renamed or never "
                "ran), so no hidden case could run.", "not_defined")
    except KeyboardInterrupt:  # nbgrader's interrupt of a cell past its time limit
        raise
    except BaseException as error:  # noqa: BLE001 - SystemExit and the like from learner code
        verdict = CheckResult(exercise, False, f"{exercise} raised {type(error).__name__}: {error}", "raised")
    return {"description": description, "passed": verdict.passed, "message": "" if verdict else verdict.message,
            "mistake": verdict.mistake}


def run_hidden_cases(exercise: str, function, seed: int, points: float) -> dict:
    """The report on a learner's function (None when the notebook lacks it): exercise, points (earned:
    points x passed / cases), max_points, passed, and cases (description, passed, message, mistake)."""
    cases = [_outcome(exercise, description, judge_case, function)
             for description, judge_case in hidden_cases(exercise, seed)]
    passed = sum(case["passed"] for case in cases)
    return {"exercise": exercise, "points": round(float(points) * passed / len(cases), 2),
            "max_points": float(points), "passed": passed, "cases": cases}


def report_text(report: dict) -> str:
    """A headline, one line per case, and each failure's message once (a stub gives the same for all)."""
    lines = [f"Hidden tests of {report['exercise']}: {report['passed']} of {len(report['cases'])} cases passed, "
             f"{report['points']:g} of {report['max_points']:g} points."]
    for number, case in enumerate(report["cases"]):
        lines.append(f"  {'passed' if case['passed'] else 'FAILED'}  {case['description']}")
        if case["message"] not in [earlier["message"] for earlier in report["cases"][:number]]:
            lines += ["      " + line for line in case["message"].splitlines()]
    return "\n".join(lines)


def grade(exercise: str, function, points: float, seed: int) -> float:
    """What a hidden test cell calls: display the report (text, and RESULT_MIME JSON); return the points earned."""
    report = run_hidden_cases(exercise, function, seed, points)
    if getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)() is None:  # outside a kernel: plain text
        print(report_text(report))
    else:
        from IPython.display import display
        display({"text/plain": report_text(report), RESULT_MIME: report}, raw=True)
    return report["points"]


def _generator(seed: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + salt) % (2**63 - 1))  # a salt per exercise


def _fractions(generator: torch.Generator, *shape: int, low: int = -20, high: int = 20,
               step: float = 10) -> torch.Tensor:
    """Random float32 multiples of 1/step (step 4 or 8: squares and sums stay exact, so ties stay ties)."""
    return torch.randint(low, high + 1, shape, generator=generator).float() / step


def _checked(exercise: Exercise, *cases: Case, after_cases: tuple = ()) -> tuple:
    """Hidden cases judged like the visible check's cases, each followed by the given `after_cases`."""
    return tuple((case.description, lambda function, case=case: judge(
        function, replace(exercise, cases=(case,), after_cases=after_cases))) for case in cases)


def _distance_matrix_cases(seed: int) -> tuple:
    g = _generator(seed, 1)
    three = _fractions(g, 2, 4)
    return (*_checked(DISTANCE_MATRIX, Case("seven random points in 3-D", (_fractions(g, 7, 3),)),
                      Case("a single point in 5-D", (_fractions(g, 1, 5),)),
                      Case("four points in 4-D, three of them equal", (three[[0, 0, 0, 1]],))),
            # The visible check's clamp and loop tests after a hidden case (a looked-up answer fails that first).
            *_checked(DISTANCE_MATRIX, Case("30 random points in 8-D, then no negative distance and no Python loop",
                                            (_fractions(g, 30, 8),)), after_cases=DISTANCE_MATRIX.after_cases))


def _triplet_loss_cases(seed: int) -> tuple:
    g = _generator(seed, 2)
    same = _fractions(g, 3, 4)
    return _checked(
        TRIPLET_LOSS, Case("six random triplets in 5-D, alpha = 0.35", (*_fractions(g, 3, 6, 5), 0.35)),
        Case("one triplet in 1-D, alpha = 1.0", (*_fractions(g, 3, 1, 1), 1.0)),
        Case("a tie d(A,P) = d(A,N) and alpha = 0 (loss 0)",
             (torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, -1.0]]), 0.0)),
        Case("three triplets whose positive is the anchor itself, alpha = 0.5",
             (same, same.clone(), _fractions(g, 3, 4), 0.5)))


def _mean_over_active_cases(seed: int) -> tuple:
    g = _generator(seed, 3)
    mixed = _fractions(g, 8, low=0, high=12) * (torch.rand(8, generator=g) < 0.6)
    mixed[0], mixed[1] = 0.0, 0.4  # at least one inactive and one active triplet
    return (*_checked(MEAN_OVER_ACTIVE, Case("eight random losses, some of them 0", (mixed,)),
                      Case("one loss, positive", (torch.tensor([0.7]),))),
            *_checked(MEAN_OVER_ACTIVE, Case("one loss, 0: no triplet is active", (torch.zeros(1),)),
                      after_cases=MEAN_OVER_ACTIVE.after_cases))


def _valid_triplet_mask_cases(seed: int) -> tuple:
    persons = torch.tensor([101, 205, 307])
    shuffled = persons[torch.randint(0, 3, (8,), generator=_generator(seed, 4))]
    shuffled[:4] = persons[[0, 1, 2, 0]]  # every person appears, one of them twice
    return _checked(
        VALID_TRIPLET_MASK, Case("eight pictures of three persons with ids 101, 205 and 307, shuffled", (shuffled,)),
        Case("four pictures of one person: no negative, no triplet", (torch.tensor([6, 6, 6, 6]),)),
        Case("a single picture", (torch.tensor([3]),)),
        Case("negative ids, labels [-1, 4, -1, 4, 4]", (torch.tensor([-1, 4, -1, 4, 4]),)))


def _semihard_mask_cases(seed: int) -> tuple:
    points = torch.randint(-3, 4, (10, 2), generator=_generator(seed, 5)).float()
    grid = reference.pairwise_distances(points).float()  # whole numbers, with ties
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    line = torch.tensor([0, 0.5, 0.25, 0.5, 0.75, -0.625, 1.0])  # pair at 0.5; negatives at 0.25, 0.5, 0.75, 0.625, 1
    return _checked(
        SEMIHARD_MASK, Case("10 pictures of 4 persons on a grid, squared distances with ties, alpha = 3",
                            (grid, labels, 3.0)),
        Case("pair at distance 0.5; negatives at 0.25, 0.5 (a tie), 0.625, 0.75 (the edge) and 1; alpha = 0.25",
             ((line[:, None] - line).abs(), torch.tensor([0, 0, 1, 2, 3, 4, 5]), 0.25)),
        Case("the same 10 pictures with alpha = 0: no triplet is semi-hard", (grid, labels, 0.0)),
        Case("two pictures of two persons: no positive pair",
             (torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([7, 8]), 1.0)))


def _training_step_cases(seed: int) -> tuple:
    """Small networks with stale gradients, their optimiser, a loss and a few P x K batches."""
    def scenario(salt: int, momentum: bool, mining: str, persons: int, pictures: int, steps: int):
        g = _generator(seed, salt)
        model = nn.Sequential(nn.Flatten(), nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3))
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=g) * 0.5)
                parameter.grad = torch.full_like(parameter, 0.25)  # left over from an "earlier step"
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9 if momentum else 0, weight_decay=0.01)
        labels = torch.arange(persons).repeat_interleave(pictures)
        batches = [(torch.rand(len(labels), 2, 2, 2, generator=g), labels) for _ in range(steps)]
        return model, optimizer, TripletLoss(alpha=0.3, mining=mining), batches

    cases = {"SGD with momentum, batch-all loss, three batches of 4 persons x 2": (61, True, "all", 4, 2, 3),
             "SGD with weight decay, batch-hard loss, two batches of 3 persons x 3": (62, False, "hard", 3, 3, 2),
             "one batch of 2 persons x 4, semi-hard loss": (63, False, "semihard", 2, 4, 1)}
    return tuple((text, lambda function, e=training_step_exercise(text, partial(scenario, *args)): judge(function, e))
                 for text, args in cases.items())


def _verify_cases(seed: int) -> tuple:
    quarters = partial(_fractions, _generator(seed, 7), low=-8, high=8, step=4)
    a, b, one = quarters(5, 4), quarters(5, 4), quarters(6)
    at_threshold = float(((a[2] - b[2]) ** 2).sum())  # pair 2 lies exactly on the threshold
    return _checked(
        VERIFY, Case(f"five pairs in 4-D, threshold {at_threshold:g} (one pair exactly on it)", (a, b, at_threshold)),
        Case("one pair of equal encodings in 6-D, threshold 0", (one, one.clone(), 0.0)),
        Case("n = 1 pair given as (1, 3) tensors, threshold 1.5", (quarters(1, 3), quarters(1, 3), 1.5)),
        Case("eight pairs with long encodings (not unit length), threshold 20",
             (quarters(8, 3, low=-16, high=16), quarters(8, 3, low=-16, high=16), 20.0)))


def _error_rates_cases(seed: int) -> tuple:
    eighths = partial(_fractions, _generator(seed, 8), step=8)
    same, different = eighths(4, low=0, high=12), eighths(8, low=6, high=24)
    thresholds = torch.cat([same[:2], different[:1], eighths(2, low=0, high=24)])  # some exactly on a distance
    return _checked(
        ERROR_RATES, Case("4 same-person and 8 different-person distances, 5 thresholds, some exactly on a distance",
                          (same, different, thresholds)),
        Case("one threshold, 1 same-person and 2 different-person distances",
             (torch.tensor([0.75]), torch.tensor([0.5, 2.0]), torch.tensor([1.0]))),
        Case("thresholds in decreasing order", (same, different, torch.tensor([3.0, 1.5, 1.0, 0.25]))),
        Case("16 same-person and 64 different-person random distances, 40 thresholds",
             (eighths(16, low=0, high=16), eighths(64, low=8, high=32), eighths(40, low=0, high=32))))


def _name_the_failure_cases(seed: int) -> tuple:
    """Runs that tell each named mistake apart, and the edges of the rules (exactly half the steps empty)."""
    alpha = round(0.1 + 0.8 * float(torch.rand((), generator=_generator(seed, 9))), 2)
    inf = float("inf")
    runs = [Case(description, tuple(args)) for description, *args in [
        (f"a run that collapsed, alpha = {alpha}",
         _history([alpha * 0.9, alpha, alpha, alpha], 1.0, [0.3, 0.01, 0.0, 0.0], [0.9, 0.05 * alpha, 0.0, 0.0]),
         alpha),
        ("a run whose encoding length became infinite at the last step",
         _history([0.15, 0.1, 0.08], 0.4, 0.2, 1.0, [1.0, 1.0, inf]), 0.2),
        ("a learning run without triplets on exactly half (3 of 6) of its steps",
         _history([0.0, 0.15, 0.0, 0.1, 0.0, 0.07], [None, 0.5, None, 0.4, None, 0.3],
                  [None, 0.3, None, 0.2, None, 0.2], [None, 1.2, None, 1.5, None, 1.8]), 0.2),
        ("a learning run without triplets on 1 of its 5 steps",
         _history([0.2, 0.0, 0.12, 0.1, 0.06], [0.7, None, 0.5, 0.4, 0.3], [0.3, None, 0.3, 0.2, 0.2],
                  [1.0, None, 1.4, 1.6, 1.9]), 0.25),
        ("alpha = 6 on encodings of length 2 whose loss fell",
         _history([5.0, 3.0, 2.0, 1.0], [1.0, 0.7, 0.5, 0.3], 0.5, [1.5, 3.5, 4.5, 5.5], 2.0), 6.0),
        ("a run whose loss stayed at alpha = 1 while d(A,N) stayed large",
         _history([1.0, 1.0, 0.98, 0.97], [0.9, 0.5, 0.3, 0.2], 2.0, [2.5, 2.8, 3.0, 3.2]), 1.0),
    ]]
    everything = replace(EXERCISE, cases=tuple(runs), after_cases=())
    return tuple((run.description, partial(_judge_run, everything, number)) for number, run in enumerate(runs))


def _judge_run(everything: Exercise, number: int, function) -> CheckResult:
    """Run `number` of name_the_failure alone; a wrong name is explained by the learner's answers on all runs
    (one run cannot tell two mistakes apart)."""
    verdict = judge(function, replace(everything, cases=(everything.cases[number],)))
    if verdict:  # right on this run: the other runs are not needed
        return verdict
    every = collect_answers(function, everything, requires_grad=False)
    if isinstance(every, CheckResult):
        return verdict
    return everything.explain(everything, number, every, everything.expected(*everything.cases[number].args))


# The builders of each exercise's hidden cases (description, judge(function) -> CheckResult) from a seed.
EXERCISES: dict[str, Callable[[int], tuple]] = {
    "distance_matrix": _distance_matrix_cases, "triplet_loss": _triplet_loss_cases,
    "mean_over_active": _mean_over_active_cases, "valid_triplet_mask": _valid_triplet_mask_cases,
    "semihard_mask": _semihard_mask_cases, "training_step": _training_step_cases, "verify": _verify_cases,
    "error_rates": _error_rates_cases, "name_the_failure": _name_the_failure_cases,
}
DEFAULT_POINTS = {"distance_matrix": 3, "triplet_loss": 2, "mean_over_active": 2, "valid_triplet_mask": 2,
                  "semihard_mask": 3, "training_step": 3, "verify": 2, "error_rates": 3, "name_the_failure": 3}


def hidden_cases(exercise: str, seed: int) -> tuple:
    """The hidden cases of an exercise for a seed (always the same for the same seed)."""
    if exercise not in EXERCISES:
        raise KeyError(f"no hidden tests for the exercise {exercise!r}; known: {', '.join(EXERCISES)}. "
                       "Add its cases to course_instructor/hidden_tests.py.")
    return EXERCISES[exercise](int(seed))
