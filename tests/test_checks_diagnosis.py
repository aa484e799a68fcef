"""The name-the-failure check: right answers pass, wrong names get the missed symptom, a stub is kind."""
import math

import pytest

from course_utils.checks_diagnosis import check_name_the_failure


def correct(history, alpha):
    last = history[-1]
    if any(math.isnan(r["loss"]) for r in history):
        return "nan"
    if sum(r["active_fraction"] is None for r in history) > len(history) / 2:
        return "no_valid_triplets"
    if alpha >= 4:
        return "margin_too_large"
    if last["mean_d_an"] < 0.1 * alpha and abs(last["loss"] - alpha) < 0.1 * alpha:
        return "collapsed"
    return "healthy"


def always_healthy(history, alpha):
    return "healthy"


def forgets_nan(history, alpha):
    answer = correct(history, alpha)
    return "collapsed" if answer == "nan" else answer


def stub(history, alpha):
    # YOUR CODE HERE
    raise NotImplementedError()


def test_correct_answer_passes(capsys):
    result = check_name_the_failure(correct)
    assert result.passed
    assert "Well done" in capsys.readouterr().out


def test_always_healthy_is_told_the_collapse_symptom():
    result = check_name_the_failure(always_healthy)
    assert not result.passed and result.mistake == "said_healthy"
    assert "'collapsed'" in result.message and "d(A,N) is almost 0" in result.message


def test_wrong_name_for_nan_gets_the_nan_symptom():
    result = check_name_the_failure(forgets_nan)
    assert not result.passed and result.mistake == "said_collapsed"
    assert "isnan" in result.message


def test_unknown_name_lists_the_names():
    result = check_name_the_failure(lambda history, alpha: None)
    assert result.mistake == "unknown_name" and "'no_valid_triplets'" in result.message


def test_stub_gets_the_kind_message():
    result = check_name_the_failure(stub)
    assert result.mistake == "not_implemented" and "not implemented yet" in result.message


def test_a_call_instead_of_a_function_is_refused():
    with pytest.raises(TypeError, match="function itself"):
        check_name_the_failure("healthy")
