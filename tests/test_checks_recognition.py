"""The check of notebook 07's verify exercise, fed real correct and mistaken code."""
import pytest
import torch
import torch.nn.functional as F

from course_utils.checks_recognition import VERIFY, check_verify


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


def verify_cosine(a, b, threshold):
    distance = 1 - F.cosine_similarity(a, b, dim=-1)
    return distance, distance <= threshold


def verify_normalising(a, b, threshold):
    return verify(F.normalize(a, dim=-1), F.normalize(b, dim=-1), threshold)


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
    assert capsys.readouterr().out.strip() == f"Well done: verify is correct on all {len(VERIFY.cases)} test cases."


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
    (verify_cosine, "cosine_distance"),
    (verify_normalising, "normalised_inputs"),
    (verify_dim_one, "summed_wrong_axis"),
    (verify_python_if, "builtin_compare"),
    (verify_in_place, "modified_input"),
    (verify_stub, "not_implemented"),
    (verify_numbers, "decision_not_boolean"),
    (verify_distance_only, "not_a_pair"),
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
