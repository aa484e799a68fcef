"""The checks of notebook 07's exercises (verify, error_rates), fed real correct and mistaken code."""
import pytest
import torch
import torch.nn.functional as F

from course_utils.core import reference
from course_utils.checks.recognition import ERROR_RATES, VERIFY, _library_case, check_error_rates, check_verify
from course_utils.evaluation.recognition import equal_error_rate, roc_curve, threshold_summary


def verify(a, b, threshold):
    distance = ((a - b) ** 2).sum(dim=-1)
    return distance, distance <= threshold


def verify_strict(a, b, threshold):
    distance = ((a - b) ** 2).sum(dim=-1)
    return distance, distance < threshold


def verify_reversed(a, b, threshold):
    distance = ((a - b) ** 2).sum(dim=-1)
    return distance, distance > threshold


def verify_without_square(a, b, threshold):
    distance = (a - b).norm(dim=-1)
    return distance, distance <= threshold


def verify_dim_one(a, b, threshold):
    distance = ((a - b) ** 2).sum(dim=1)
    return distance, distance <= threshold


def verify_python_if(a, b, threshold):
    distance = ((a - b) ** 2).sum(dim=-1)
    return distance, bool(distance <= threshold)


def verify_in_place(a, b, threshold):
    a -= b
    distance = (a**2).sum(dim=-1)
    return distance, distance <= threshold


def verify_stub(a, b, threshold):
    raise NotImplementedError()


def verify_numbers(a, b, threshold):
    distance = ((a - b) ** 2).sum(dim=-1)
    return distance, (distance <= threshold).float()


def verify_distance_only(a, b, threshold):
    return ((a - b) ** 2).sum(dim=-1)


def test_the_solution_passes_on_every_case(capsys):
    result = check_verify(verify)
    assert result.passed and result.mistake is None
    assert capsys.readouterr().out == "Well done: verify is correct on all 4 test cases.\n"


def test_cases_cover_one_pair_many_pairs_and_the_boundary():
    shapes = {case.args[0].dim() for case in VERIFY.cases}
    assert shapes == {1, 2}
    at_boundary = [verify(a, b, t)[0] == t for a, b, t in (case.args for case in VERIFY.cases)]
    assert sum(int(hit.any()) for hit in at_boundary) >= 2
    assert any(not torch.allclose(case.args[0].norm(dim=-1), torch.tensor(1.0)) for case in VERIFY.cases)


@pytest.mark.parametrize("function,mistake", [
    (verify_strict, "strict_comparison"),
    (verify_reversed, "comparison_reversed"),
    (verify_without_square, "forgot_square"),
    (verify_dim_one, None),  # IndexError on one pair, shown with a generic hint
    (verify_python_if, "python_on_tensor"),
    (verify_in_place, "modified_input"),
    (verify_stub, "not_implemented"),
    (verify_numbers, "not_boolean"),
    (verify_distance_only, "not_a_tuple"),
    (lambda a, b, t: (((a - b) ** 2).sum(dim=-1).tolist(), True), "not_a_tensor"),
])
def test_each_mistake_is_named(function, mistake, capsys):
    result = check_verify(function)
    assert not result.passed and result.mistake == mistake
    assert capsys.readouterr().out.strip() == result.message


def test_every_listed_mistake_differs_from_the_answer_somewhere():
    for mistake in VERIFY.mistakes:
        assert any(
            not (torch.allclose(mistake.compute(*c.args)[0], VERIFY.expected(*c.args)[0])
                 and torch.equal(mistake.compute(*c.args)[1], VERIFY.expected(*c.args)[1]))
            for c in VERIFY.cases
        ), mistake.name


def test_passing_the_call_instead_of_the_function_is_explained():
    with pytest.raises(TypeError, match="without parentheses"):
        check_verify(verify(torch.zeros(2), torch.zeros(2), 0.5))


# ---------------------------------------------------------------------------
# error_rates(same, different, thresholds) -> (far, frr, eer)


def _closest(far, frr):
    best = (far - frr).abs().argmin()
    return far, frr, (far[best] + frr[best]) / 2


def error_rates(same, different, thresholds):
    far = (different[None, :] <= thresholds[:, None]).float().mean(dim=1)
    frr = (same[None, :] > thresholds[:, None]).float().mean(dim=1)
    return _closest(far, frr)


def error_rates_loop(same, different, thresholds):
    far = torch.stack([(different <= t).double().mean() for t in thresholds])
    frr = torch.stack([(same > t).double().mean() for t in thresholds])
    best = min(range(len(thresholds)), key=lambda i: abs(float(far[i] - frr[i])))
    return far, frr, (far[best] + frr[best]) / 2


def error_rates_strict(same, different, thresholds):
    far = (different[None, :] < thresholds[:, None]).float().mean(dim=1)
    frr = (same[None, :] >= thresholds[:, None]).float().mean(dim=1)
    return _closest(far, frr)


def error_rates_swapped(same, different, thresholds):
    far, frr, eer = error_rates(same, different, thresholds)
    return frr, far, eer


def error_rates_counts(same, different, thresholds):
    far = (different[None, :] <= thresholds[:, None]).sum(dim=1)
    frr = (same[None, :] > thresholds[:, None]).sum(dim=1)
    return _closest(far, frr)


def error_rates_true_accepts(same, different, thresholds):
    far = (different[None, :] <= thresholds[:, None]).float().mean(dim=1)
    tar = (same[None, :] <= thresholds[:, None]).float().mean(dim=1)
    return _closest(far, tar)


def error_rates_no_broadcast(same, different, thresholds):
    far = (different <= thresholds).float().mean()
    return far, far, far


def error_rates_python_if(same, different, thresholds):
    far = [float(sum(1 for d in different if d <= thresholds) / len(different))]
    return far, far, far[0]


def error_rates_stub(same, different, thresholds):
    raise NotImplementedError()


def error_rates_pair(same, different, thresholds):
    return error_rates(same, different, thresholds)[:2]


def error_rates_lists(same, different, thresholds):
    far, frr, eer = error_rates(same, different, thresholds)
    return far.tolist(), frr.tolist(), eer


def error_rates_half_precision(same, different, thresholds):
    """Right on the small cases (quarters are exact in float16), wrong where float16 merges random distances."""
    return error_rates(same.half(), different.half(), thresholds.half())


def error_rates_in_place(same, different, thresholds):
    different -= 0
    thresholds += 0.5
    return error_rates(same, different, thresholds)


@pytest.mark.parametrize("function", [error_rates, error_rates_loop])
def test_error_rates_solutions_pass(function, capsys):
    result = check_error_rates(function)
    assert result.passed and result.mistake is None
    assert capsys.readouterr().out == ("Well done: error_rates is correct on all 4 test cases and agrees with the "
                                       "library's roc_curve and equal_error_rate on 340 random distances.\n")


@pytest.mark.parametrize("function,mistake", [
    (error_rates_strict, "strict_comparison"),
    (error_rates_swapped, "rates_swapped"),
    (error_rates_counts, "counts_not_rates"),
    (error_rates_true_accepts, "true_accept_rate"),
    (error_rates_no_broadcast, "size_mismatch"),
    (error_rates_python_if, "python_on_tensor"),
    (error_rates_stub, "not_implemented"),
    (error_rates_pair, "not_a_tuple"),
    (error_rates_lists, "not_a_tensor"),
    (error_rates_half_precision, None),  # right on the small cases, wrong on the random one
    (error_rates_in_place, "modified_input"),
])
def test_each_error_rates_mistake_is_named(function, mistake, capsys):
    result = check_error_rates(function)
    assert not result.passed and result.mistake == mistake
    assert capsys.readouterr().out.strip() == result.message


def test_error_rates_cases_are_unambiguous_and_catch_each_slip():
    for case in ERROR_RATES.cases[:4]:
        same, different, thresholds = case.args
        assert len({len(same), len(different)}) == 2 and len(thresholds) not in (len(same), len(different))
        far, frr, _ = ERROR_RATES.expected(*case.args)
        gaps = (far - frr).abs().sort().values
        assert len(gaps) == 1 or gaps[1] - gaps[0] > 0.01  # a unique closest threshold
    at_threshold = [bool(torch.isin(torch.cat(case.args[:2]), case.args[2]).any()) for case in ERROR_RATES.cases]
    assert sum(at_threshold) >= 2
    for mistake in ERROR_RATES.mistakes:
        assert any(
            not all(torch.allclose(torch.as_tensor(got).double(), want)
                    for got, want in zip(mistake.compute(*c.args), ERROR_RATES.expected(*c.args)))
            for c in ERROR_RATES.cases
        ), mistake.name


def test_on_the_checks_random_case_the_reference_agrees_with_the_library():
    """What lets a passed check say that the answer agrees with roc_curve and equal_error_rate."""
    assert all(torch.equal(a, b) for a, b in zip(ERROR_RATES.cases[-1].args, _library_case()))
    same, different, thresholds = _library_case()
    far, frr, eer = reference.error_rates(same, different, thresholds)
    curve = roc_curve(same, different)
    assert torch.allclose(far, curve.false_accept_rate) and torch.allclose(frr, 1 - curve.true_accept_rate)
    assert float(eer) == pytest.approx(equal_error_rate(same, different).rate)
    gaps = (far - frr).abs().sort().values
    assert gaps[1] - gaps[0] > 0.01  # the library case has no near-tie either
    for threshold in (0.0, float(thresholds[100]), 1.0, 3.0):
        fa, fr, fa_rate, fr_rate = reference.verification_errors(same, different, threshold)
        summary = threshold_summary(same, different, threshold)
        assert (fa, fr) == (summary.false_accepts, summary.false_rejects)
        assert (fa_rate, fr_rate) == pytest.approx((summary.false_accept_rate, summary.false_reject_rate))


def test_passing_the_call_instead_of_error_rates_is_explained():
    with pytest.raises(TypeError, match="without parentheses"):
        check_error_rates(error_rates(torch.zeros(2), torch.ones(3), torch.ones(1)))
