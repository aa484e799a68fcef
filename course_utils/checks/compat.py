"""The two entry points course_instructor.hidden_tests called before every check shared one runner.

Delete this module once hidden_tests judges every case with `course_utils.checks.runner.judge(function,
replace(EXERCISE, cases=(case,), after_cases=()))`; the extra arguments below are no longer needed.
"""
from __future__ import annotations

from dataclasses import replace

from course_utils.checks.recognition import ERROR_RATES, VERIFY
from course_utils.checks.runner import CheckResult, Exercise, judge

__all__ = ["ERROR_RATES", "VERIFY", "run_mask_check", "_first_wrong_case"]
# The hooks hidden_tests passes along; each Exercise now carries its own.
_wrong_form = _answer_matches = _show_answer = _wrong_rates_form = _rates_match = _show_rates = None


def run_mask_check(function, exercise: Exercise, **hooks) -> CheckResult:
    """The verdict of the one runner (the mask's hooks are on the Exercise)."""
    return judge(function, exercise)


def _first_wrong_case(function, exercise: Exercise, *hooks) -> CheckResult | None:
    """The verdict on the exercise's cases only, None when they pass."""
    verdict = judge(function, replace(exercise, after_cases=()))
    return None if verdict.passed else verdict
