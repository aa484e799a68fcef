"""Check of notebook 08's exercise: name_the_failure(history, alpha) names made-up runs by the five rules."""
from __future__ import annotations

import math

from course_utils.checks.runner import Case, CheckResult, Exercise, Mistake, fail, run_check
from course_utils.core import reference
from course_utils.lessons.diagnosis import FAILURES

ALPHA = 0.2
NAN = float("nan")


def _history(losses, active, d_ap, d_an, norm=1.0) -> list[dict]:
    """Records of a short run; a single value for active, d_ap, d_an or norm is repeated on every step."""
    columns = [value if isinstance(value, list) else [value] * len(losses) for value in (active, d_ap, d_an, norm)]
    return [{"step": step + 1, "loss": loss, "active_fraction": a, "mean_d_ap": p, "mean_d_an": n,
             "embedding_norm": length} for step, (loss, a, p, n, length) in enumerate(zip(losses, *columns))]


def _rules(history, alpha, *, test_nan=True, any_empty_step=False, needs_unit_length=True,
           collapse_needs_d_an=True) -> str:
    """The five rules with one of them changed: what a learner's function with that mistake returns."""
    if test_nan and any(r[key] is not None and not math.isfinite(r[key])
                        for r in history for key in ("loss", "mean_d_ap", "mean_d_an", "embedding_norm")):
        return "nan"
    empty = sum(r["active_fraction"] is None for r in history)
    if empty > (0 if any_empty_step else len(history) / 2):
        return "no_valid_triplets"
    last = history[-1]
    if (abs(last["embedding_norm"] - 1) < 0.001 or not needs_unit_length) and alpha >= 4:
        return "margin_too_large"
    near_zero = last["mean_d_an"] is not None and last["mean_d_an"] < 0.1 * alpha
    if (near_zero or not collapse_needs_d_an) and abs(last["loss"] - alpha) < 0.1 * alpha:
        return "collapsed"
    return "healthy"


RULES_HINT = ("apply the five rules in order; the first that holds names the run: any nan; active_fraction None in "
              "more than half of the records; alpha >= 4 on unit vectors; in the LAST record, mean d(A,N) < 0.1 * "
              "alpha with the loss within 0.1 * alpha of alpha (collapsed); else healthy.")
MISTAKES = (
    Mistake("nan_not_tested", lambda h, a: _rules(h, a, test_nan=False),
            "a NaN compares False with everything, so a NaN run slips past every other rule: test rule 1 first."),
    Mistake("one_empty_step_counts", lambda h, a: _rules(h, a, any_empty_step=True),
            "one step without a triplet happens by chance; rule 2 needs MORE THAN HALF of the records without one."),
    Mistake("alpha_only", lambda h, a: _rules(h, a, needs_unit_length=False),
            "alpha >= 4 is out of reach only for unit vectors: check that history[-1]['embedding_norm'] is 1 too."),
    Mistake("collapse_from_loss_only", lambda h, a: _rules(h, a, collapse_needs_d_an=False),
            "a loss near alpha alone is no collapse (the mean is over active triplets): rule 4 needs d(A,N) ~ 0 too."),
)


def _wrong_name(exercise: Exercise, number: int, answers: list, expected: str) -> CheckResult:
    """A wrong name, explained by the mistake that reproduces EVERY answer, else by the rules."""
    case, answer = exercise.cases[number], answers[number]
    if answer not in FAILURES:
        return fail(exercise.name, f"returned {answer!r} for \"{case.description}\".",
                    f"return {exercise.returns}, spelt exactly so (did you forget the `return`?).", "unknown_name")
    found = next((m for m in exercise.mistakes
                  if all(m.compute(*c.args) == a for c, a in zip(exercise.cases, answers))), None)
    return fail(exercise.name, f"named \"{case.description}\" {answer!r}, but it is {expected!r}.",
                RULES_HINT if found is None else found.hint, f"said_{answer}" if found is None else found.name)


EXERCISE = Exercise(
    name="name_the_failure",
    returns=f"one of the names {', '.join(map(repr, FAILURES))}",
    expected=reference.name_the_failure,
    cases=(
        Case("a run whose loss fell from 0.18 to 0.05",
             (_history([0.18, 0.12, 0.08, 0.05], [0.6, 0.4, 0.3, 0.2], 0.3, [1.2, 1.5, 1.8, 2.0]), ALPHA)),
        Case("a run whose loss went to alpha = 0.2",
             (_history([0.15, 0.19, 0.2, 0.2], 1.0, [0.2, 0.01, 0.0, 0.0], [0.9, 0.05, 0.001, 0.0001]), ALPHA)),
        Case("a run with a loss of 0.04, then nan",
             (_history([0.04, NAN, NAN], 0.3, [0.1, NAN, NAN], [1.0, NAN, NAN], [1.0, NAN, NAN]), ALPHA)),
        Case("a run whose loss was 0 on 3 of 4 steps",
             (_history([0.0, 0.1, 0.0, 0.0], [None, 0.5, None, None], [None, 0.2, None, None], 1.0), ALPHA)),
        Case("a run with alpha = 5 on unit vectors whose loss stayed near 3",
             (_history([3.1, 3.0, 2.9, 2.9], 1.0, 0.1, 2.2), 5.0)),
        Case("a learning run without triplets on 1 of its 4 steps",
             (_history([0.16, 0.0, 0.1, 0.07], [0.6, None, 0.4, 0.3], [0.3, None, 0.3, 0.2],
                       [1.1, None, 1.5, 1.8]), ALPHA)),
        Case("a learning run without triplets on 2 of its 4 steps",
             (_history([0.0, 0.15, 0.0, 0.08], [None, 0.5, None, 0.3], [None, 0.3, None, 0.2],
                       [None, 1.2, None, 1.8]), ALPHA)),
        Case("a run with alpha = 5 on encodings of length 3 whose loss fell from 4 to 1",
             (_history([4.0, 2.5, 1.6, 1.0], [1.0, 0.8, 0.6, 0.4], 1.0, [3.0, 6.0, 9.0, 12.0], 3.0), 5.0)),
        Case("a run whose loss stayed near alpha = 0.2 while d(A,N) grew to 1.4",
             (_history([0.2, 0.2, 0.2, 0.199], [0.6, 0.3, 0.15, 0.1], 0.18, [0.8, 1.1, 1.3, 1.4]), ALPHA)),
        Case("a run whose batches mostly had no triplet, and then turned nan",
             (_history([0.0, 0.0, 0.1, NAN], [None, None, 0.5, None], [None, None, 0.2, NAN],
                       [None, None, 1.0, NAN], [1.0, 1.0, 1.0, NAN]), ALPHA)),
    ),
    mistakes=MISTAKES,
    needs_gradient=False,
    explain=_wrong_name,
    passed="names all {count} runs correctly.",
)


def check_name_the_failure(function) -> CheckResult:
    """Check a learner's name_the_failure(history, alpha) -> a name from FAILURES."""
    return run_check(function, EXERCISE)
