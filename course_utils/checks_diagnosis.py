"""Check for notebook 08's exercise: name the failure of a run from its history.

The learner writes ``name_the_failure(history, alpha)`` returning one of
`course_utils.diagnosis.FAILURES` ("nan", "no_valid_triplets", "margin_too_large",
"collapsed", "healthy") for a run that used squared Euclidean distances on unit vectors.
The check feeds it one small made-up history per failure and compares with
`course_utils.diagnosis.diagnose`. A wrong name gets the symptom the learner missed.
It prints one message and returns a ``course_utils.checks.CheckResult``.
"""
from __future__ import annotations

from .checks import Case, CheckResult, Exercise, collect_answers
from .diagnosis import FAILURES, diagnose

EXERCISE_NAME = "name_the_failure"
ALPHA = 0.2


def _history(losses, active, d_ap, d_an, norm=1.0) -> list[dict]:
    """Records of a short run; a single value for active, d_ap, d_an is repeated on every step."""
    steps = len(losses)
    def spread(value):
        return value if isinstance(value, list) else [value] * steps
    return [{"step": step + 1, "loss": loss, "active_fraction": a, "mean_d_ap": p, "mean_d_an": n,
             "embedding_norm": norm}
            for step, (loss, a, p, n) in enumerate(zip(losses, spread(active), spread(d_ap), spread(d_an)))]


# What gives each failure away, shown when the learner named another one.
SYMPTOMS = {
    "nan": "a loss or distance became nan: math.isnan(record['loss']) is True from some step on.",
    "no_valid_triplets": "active_fraction is None in most records: those batches held no anchor-positive "
                         "pair, so there was no triplet at all.",
    "margin_too_large": "the encodings have length 1, so squared Euclidean distances are at most 4, and "
                        "alpha is at least 4: no triplet can ever reach loss 0.",
    "collapsed": "at the end mean d(A,N) is almost 0 and the loss sits at alpha: every encoding is at "
                 "the same point.",
    "healthy": "every number is finite, the batches have triplets, alpha is below 4 and d(A,N) stays "
               "far from 0 while the loss falls.",
}

EXERCISE = Exercise(
    name=EXERCISE_NAME,
    returns=f"one of the names {', '.join(map(repr, FAILURES))}",
    expected=lambda history, alpha: diagnose(history, alpha).name,
    cases=(
        Case("a run whose loss fell from 0.18 to 0.05",
             (_history([0.18, 0.12, 0.08, 0.05], [0.6, 0.4, 0.3, 0.2], 0.3, [1.2, 1.5, 1.8, 2.0]), ALPHA)),
        Case("a run whose loss went to alpha = 0.2",
             (_history([0.15, 0.19, 0.2, 0.2], 1.0, [0.2, 0.01, 0.0, 0.0], [0.9, 0.05, 0.001, 0.0001]), ALPHA)),
        Case("a run with a loss of 0.04, then nan",
             (_history([0.04, float("nan"), float("nan")], 0.3, [0.1, float("nan"), float("nan")],
                       [1.0, float("nan"), float("nan")]), ALPHA)),
        Case("a run whose loss was 0 on most steps",
             (_history([0.0, 0.1, 0.0, 0.0], [None, 0.5, None, None], [None, 0.2, None, None], 1.0), ALPHA)),
        Case("a run with alpha = 5 whose loss stayed near 3",
             (_history([3.1, 3.0, 2.9, 2.9], 1.0, 0.1, 2.2), 5.0)),
    ),
    mistakes=(),
    needs_gradient=False,
)


def _fail(headline: str, details: str, mistake: str | None) -> CheckResult:
    return CheckResult(EXERCISE_NAME, False, f"Not yet: {EXERCISE_NAME} {headline}\n{details}", mistake)


def _verdict(function) -> CheckResult:
    answers = collect_answers(function, EXERCISE, requires_grad=False)
    if isinstance(answers, CheckResult):
        return answers
    for case, answer in zip(EXERCISE.cases, answers):
        expected = EXERCISE.expected(*case.args)
        if answer not in FAILURES:
            return _fail(f"returned {answer!r} for \"{case.description}\".",
                         f"  Expected {EXERCISE.returns}.\n  Hint: return the name as a string, spelt "
                         "exactly as in the list (did you forget the `return`?).", "unknown_name")
        if answer != expected:
            return _fail(f"named \"{case.description}\" {answer!r}, but it is {expected!r}.",
                         f"  Hint: {SYMPTOMS[expected]}", f"said_{answer}")
    return CheckResult(EXERCISE_NAME, True,
                       f"Well done: {EXERCISE_NAME} names all {len(EXERCISE.cases)} runs correctly.")


def check_name_the_failure(function) -> CheckResult:
    """Check a learner's name_the_failure(history, alpha) -> a name from FAILURES; print the verdict."""
    if not callable(function):
        raise TypeError(f"pass the function itself, for example check_name_the_failure(name_the_failure); "
                        f"got a {type(function).__name__}.")
    result = _verdict(function)
    print(result.message)
    return result
