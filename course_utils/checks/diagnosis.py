"""Check of notebook 08's exercise: name_the_failure(history, alpha) names a run's failure by the five
rules the notebook states. The made-up runs include those a careless reading gets wrong (one step
without triplets, alpha >= 4 on encodings that are not unit vectors, a healthy loss near alpha, ...)."""
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


def _rules(history, alpha, *, test_nan=True, nan_first=True, empty_steps=lambda empty, steps: empty > steps / 2,
           needs_unit_length=True, collapse_needs_d_an=True, record=-1) -> str:
    """The five rules with one of them changed: what a learner's function with that mistake returns."""
    def has_nan():
        return test_nan and any(r[key] is not None and not math.isfinite(r[key])
                                for r in history for key in ("loss", "mean_d_ap", "mean_d_an", "embedding_norm"))

    if nan_first and has_nan():
        return "nan"
    if empty_steps(sum(r["active_fraction"] is None for r in history), len(history)):
        return "no_valid_triplets"
    if not nan_first and has_nan():
        return "nan"
    read = history[record]
    unit = abs(read["embedding_norm"] - 1) < 0.001 or not needs_unit_length
    if unit and alpha >= 4:
        return "margin_too_large"
    near_zero = read["mean_d_an"] is not None and read["mean_d_an"] < 0.1 * alpha
    if (near_zero or not collapse_needs_d_an) and abs(read["loss"] - alpha) < 0.1 * alpha:
        return "collapsed"
    return "healthy"


# What gives each failure away, shown when no known mistake explains a wrong name.
SYMPTOMS = {
    "nan": "rule 1: a loss or distance is nan (math.isnan(record['loss']) is True from some step on), "
           "and a NaN run is named 'nan' whatever else its records show.",
    "no_valid_triplets": "rule 2: active_fraction is None in more than half of the records: those batches "
                         "held no anchor-positive pair, so there was no triplet at all.",
    "margin_too_large": "rule 3: the last record's embedding_norm is 1 (unit vectors, so squared distances "
                        "are at most 4) and alpha is at least 4: no triplet can ever reach loss 0.",
    "collapsed": "rule 4: in the LAST record mean d(A,N) is almost 0 (below 0.1 * alpha) and the loss sits "
                 "at alpha (within 0.1 * alpha): every encoding is at the same point.",
    "healthy": "no rule matches: every number is finite, most batches have triplets, and the last record "
               "is neither a margin out of reach nor a collapse.",
}

MISTAKES = (
    Mistake("nan_not_tested", lambda h, a: _rules(h, a, test_nan=False),
            "a NaN compares False with everything (nan < 0.02 is False), so a NaN run slips past every other "
            "rule. Test rule 1 first: any(math.isnan(r['loss']) for r in history), and the same for the "
            "distances and the encoding length."),
    Mistake("nan_not_first", lambda h, a: _rules(h, a, nan_first=False),
            "the order of the rules matters: rule 1 (NaN) comes first. A run that turned NaN is 'nan' even "
            "when most of its batches also lacked triplets."),
    Mistake("one_empty_step_counts", lambda h, a: _rules(h, a, empty_steps=lambda empty, steps: empty > 0),
            "one step without a triplet happens by chance in a healthy run. Rule 2 needs MORE THAN HALF of the "
            "records with active_fraction None."),
    Mistake("half_counts", lambda h, a: _rules(h, a, empty_steps=lambda empty, steps: empty >= steps / 2),
            "rule 2 needs MORE THAN half of the records without a triplet; exactly half does not count "
            "(use >, not >=)."),
    Mistake("alpha_only", lambda h, a: _rules(h, a, needs_unit_length=False),
            "alpha >= 4 is out of reach only for unit vectors (squared distances at most 4). Read the encoding "
            "length from the records: rule 3 also needs abs(history[-1]['embedding_norm'] - 1) < 0.001."),
    Mistake("collapse_from_loss_only", lambda h, a: _rules(h, a, collapse_needs_d_an=False),
            "a loss near alpha alone is not a collapse: batch-all averages over the active triplets only, so a "
            "healthy run can sit near alpha too. Rule 4 also needs mean d(A,N) below 0.1 * alpha."),
    Mistake("first_record", lambda h, a: _rules(h, a, record=0),
            "rules 3 and 4 read the LAST record, history[-1]: where the run ended, not where it started."),
)


def _unknown_name(exercise: Exercise, case: Case, answer, expected) -> CheckResult | None:
    if answer in FAILURES:
        return None
    return fail(exercise, f"returned {answer!r} for \"{case.description}\".",
                f"  Expected {exercise.returns}.\n  Hint: return the name as a string, spelt exactly as in the "
                "list (did you forget the `return`?).", "unknown_name")


def _wrong_name(exercise: Exercise, number: int, answers: list, expected: str) -> CheckResult:
    """A wrong name, explained by the mistake that reproduces EVERY answer (one of five words matching one
    case proves little), else by the symptom of the right name."""
    case, answer = exercise.cases[number], answers[number]
    found = next((m for m in exercise.mistakes
                  if all(m.compute(*c.args) == a for c, a in zip(exercise.cases, answers))), None)
    return fail(exercise, f"named \"{case.description}\" {answer!r}, but it is {expected!r}.",
                f"  Hint: {SYMPTOMS[expected] if found is None else found.hint}",
                f"said_{answer}" if found is None else found.name)


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
    matches=lambda answer, expected: answer == expected,
    wrong_form=_unknown_name,
    explain=_wrong_name,
    passed="names all {count} runs correctly.",
)


def check_name_the_failure(function) -> CheckResult:
    """Check a learner's name_the_failure(history, alpha) -> a name from FAILURES."""
    return run_check(function, EXERCISE)
