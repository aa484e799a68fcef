"""The name-the-failure check: the rules pass, each typical mistake gets its own hint, a stub is kind."""
import math

import pytest

from course_utils.core import reference
from course_utils.checks.diagnosis import EXERCISE, check_name_the_failure


correct = reference.name_the_failure  # notebook 08's five rules, applied literally


def without_nan_test(history, alpha):
    """Skips rule 1. A NaN compares False with everything, so the later rules let the run pass as healthy."""
    never_matching = [{key: 1e9 if isinstance(value, float) and math.isnan(value) else value
                       for key, value in record.items()} for record in history]
    return correct(never_matching, alpha)


def any_empty_step(history, alpha):
    if any(r["active_fraction"] is None for r in history):
        return "no_valid_triplets" if correct(history, alpha) != "nan" else "nan"
    return correct(history, alpha)


def alpha_decides(history, alpha):
    answer = correct(history, alpha)
    return "margin_too_large" if answer == "healthy" and alpha >= 4 else answer


def loss_near_alpha(history, alpha):
    answer = correct(history, alpha)
    return "collapsed" if answer == "healthy" and abs(history[-1]["loss"] - alpha) < 0.1 * alpha else answer


def stub(history, alpha):
    # YOUR CODE HERE
    raise NotImplementedError()


def test_the_rules_pass(capsys):
    assert check_name_the_failure(correct).passed
    assert capsys.readouterr().out == "Well done: name_the_failure names all 10 runs correctly.\n"


def test_the_cases_cover_every_name_and_both_sides_of_each_rule():
    names = [correct(*case.args) for case in EXERCISE.cases]
    assert set(names) == {"nan", "no_valid_triplets", "margin_too_large", "collapsed", "healthy"}
    assert names.count("healthy") >= 4  # one plain, three that a careless rule would misname


@pytest.mark.parametrize("function, mistake, phrase", [
    (without_nan_test, "nan_not_tested", "compares False"),
    (any_empty_step, "one_empty_step_counts", "MORE THAN HALF"),
    (alpha_decides, "alpha_only", "embedding_norm"),
    (loss_near_alpha, "collapse_from_loss_only", "active triplets"),
])
def test_each_typical_mistake_gets_its_own_hint(function, mistake, phrase):
    result = check_name_the_failure(function)
    assert not result.passed and result.mistake == mistake
    assert phrase in result.message


def test_an_unexplained_wrong_name_gets_the_rules():
    result = check_name_the_failure(lambda history, alpha: "healthy")
    assert not result.passed and result.mistake == "said_healthy"
    assert "'collapsed'" in result.message and "apply the five rules in order" in result.message


def test_unknown_name_lists_the_names():
    result = check_name_the_failure(lambda history, alpha: None)
    assert result.mistake == "unknown_name" and "'no_valid_triplets'" in result.message


def test_stub_gets_the_kind_message():
    result = check_name_the_failure(stub)
    assert result.mistake == "not_implemented" and "not implemented yet" in result.message


def test_a_call_instead_of_a_function_is_refused():
    with pytest.raises(TypeError, match="function itself"):
        check_name_the_failure("healthy")


def test_no_two_mistakes_give_the_same_names_on_every_case():
    """Each mistake differs from the rules and from every other mistake on some case, so its hint is never
    shown for another slip."""
    from course_utils.checks.diagnosis import MISTAKES

    answers = {m.name: [m.compute(*case.args) for case in EXERCISE.cases] for m in MISTAKES}
    answers["the rules"] = [correct(*case.args) for case in EXERCISE.cases]
    names = sorted(answers)
    assert [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if answers[a] == answers[b]] == []
