"""Gallery enrol/verify/identify on crafted encodings, and threshold choice against brute force."""
import pytest
import torch

from course_utils.evaluation.retrieval import embed
from course_utils.training.models import EmbeddingNet
from course_utils.evaluation.recognition import (
    Gallery,
    equal_error_rate,
    roc_curve,
    threshold_at_far,
    threshold_summary,
)


def point(*values):
    return torch.tensor(values, dtype=torch.float32)


@pytest.fixture
def gallery():
    people = Gallery()
    people.enrol_embeddings("ada", point(1.0, 0.0))
    people.enrol_embeddings("bob", point(0.0, 1.0))
    people.enrol_embeddings("cy", point(-1.0, 0.0))
    return people


def test_verify_returns_squared_distance_and_decision(gallery):
    distance, accepted = gallery.verify_embedding(point(0.6, 0.8), "bob", threshold=0.5)
    assert distance == pytest.approx(0.4) and accepted  # 0.36 + 0.04 <= threshold
    distance, accepted = gallery.verify_embedding(point(0.6, 0.8), "ada", threshold=0.5)
    assert distance == pytest.approx(0.8) and not accepted


def test_identify_lists_nearest_first_and_says_unknown_beyond_threshold(gallery):
    name, matches = gallery.identify_embedding(point(0.6, 0.8), top_k=2)
    assert name == "bob"
    assert [m[0] for m in matches] == ["bob", "ada"] and [m[1] for m in matches] == pytest.approx([0.4, 0.8])
    name, matches = gallery.identify_embedding(point(-5.0, -5.0), top_k=5, threshold=1.0)
    assert name == "unknown"
    assert len(matches) == 3 and matches[0][0] == "cy"  # top_k capped at the gallery size
    assert gallery.identify_embedding(point(-5.0, -5.0))[0] == "cy"  # closed set: always a name


def test_enrolled_encodings_are_normalised_and_a_zero_one_stays_zero():
    people = Gallery()
    people.enrol_embeddings("ada", point(3.0, 4.0))
    people.enrol_embeddings("bob", point(0.0, 0.0))
    assert len(people) == 2 and people.names == ["ada", "bob"]
    assert torch.equal(people.encodings, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


def test_network_encodings_are_stored_as_unit_vectors():
    torch.manual_seed(0)
    model = EmbeddingNet(embedding_dim=8, width=4)
    people = Gallery()
    people.enrol_embeddings("ada", embed(model, torch.rand(1, 3, 16, 16))[0])
    assert people.encodings.shape == (1, 8)
    assert float(people.encodings.norm()) == pytest.approx(1.0, abs=1e-5)
    distance, accepted = people.verify_embedding(embed(model, torch.rand(1, 3, 16, 16))[0], "ada", threshold=4.0)
    assert 0 <= distance <= 4 and accepted


def test_errors_say_what_is_wrong(gallery):
    with pytest.raises(ValueError, match="gallery is empty"):
        Gallery().identify_embedding(torch.zeros(2))
    for name in ("ada", "unknown", "", 7):
        with pytest.raises(ValueError, match="cannot enrol .*not enrolled yet"):
            gallery.enrol_embeddings(name, point(1.0, 1.0))
    with pytest.raises(ValueError, match="'zoe' is not enrolled \\(enrolled: ada, bob, cy"):
        gallery.verify_embedding(point(1.0, 1.0), "zoe", threshold=1.0)
    with pytest.raises(ValueError, match="embedding has length 3 but the gallery holds encodings of length 2"):
        gallery.enrol_embeddings("dan", point(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="length 3 but the gallery holds encodings of length 2"):
        gallery.verify_embedding(torch.zeros(3), "ada", threshold=1.0)
    with pytest.raises(ValueError, match=r"embedding must be one encoding of shape \(D,\)"):
        gallery.identify_embedding(point(1.0, 1.0).unsqueeze(0))
    with pytest.raises(ValueError, match="NaN or inf"):
        gallery.identify_embedding(point(1.0, float("nan")))
    with pytest.raises(ValueError, match="threshold must be >= 0.*squared distance"):
        gallery.verify_embedding(point(1.0, 1.0), "ada", threshold=-1.0)
    with pytest.raises(ValueError, match="top_k must be a whole number >= 1"):
        gallery.identify_embedding(point(1.0, 1.0), top_k=0)
    with pytest.raises(TypeError, match="embedding must be a torch.Tensor"):
        gallery.identify_embedding([1.0, 1.0])


# ---- threshold choice, against slow loops over every candidate threshold -------------

SAME = torch.tensor([0.1, 0.4, 0.4, 0.9, 1.5])
DIFFERENT = torch.tensor([0.35, 0.8, 1.2, 1.5, 2.0, 3.1])


def slow_rates(same, different, threshold):
    tar = sum(d <= threshold for d in same.tolist()) / len(same)
    far = sum(d <= threshold for d in different.tolist()) / len(different)
    return far, tar


def candidates(same, different):
    distinct = sorted(set(same.tolist()) | set(different.tolist()))
    return [distinct[0] - 1e-9] + distinct  # accept nothing, then every distinct distance


def test_roc_curve_matches_brute_force():
    curve = roc_curve(SAME, DIFFERENT)
    thresholds = candidates(SAME.double(), DIFFERENT.double())
    assert curve.thresholds[1:].tolist() == pytest.approx(thresholds[1:])
    assert curve.thresholds[0] < thresholds[1]
    rates = zip(curve.thresholds.tolist(), curve.false_accept_rate.tolist(), curve.true_accept_rate.tolist())
    for t, far, tar in rates:
        assert (far, tar) == pytest.approx(slow_rates(SAME.double(), DIFFERENT.double(), t))
    assert (curve.false_accept_rate[0], curve.true_accept_rate[0]) == (0, 0)
    assert (curve.false_accept_rate[-1], curve.true_accept_rate[-1]) == (1, 1)


@pytest.mark.parametrize("seed", range(5))
def test_equal_error_rate_and_tar_at_far_match_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    same = (torch.rand(7, generator=g) * 2).double()
    different = (torch.rand(9, generator=g) * 2 + 0.5).double()
    rows = [(t, *slow_rates(same, different, t)) for t in candidates(same, different)]
    gaps = [abs(far - (1 - tar)) for _, far, tar in rows]
    t, far, tar = rows[gaps.index(min(gaps))]  # the first (smallest) threshold on ties
    eer = equal_error_rate(same, different)
    assert eer.threshold == pytest.approx(t) and eer.rate == pytest.approx((far + 1 - tar) / 2)
    for budget in (0.0, 0.2, 0.5, 1.0):
        t, far, tar = max((row for row in rows if row[1] <= budget), key=lambda row: row[0])
        point = threshold_at_far(same, different, budget)
        assert point.threshold == pytest.approx(t, abs=1e-8)
        assert (point.true_accept_rate, point.false_accept_rate) == pytest.approx((tar, far))


def test_threshold_summary_counts_and_text():
    summary = threshold_summary(SAME, DIFFERENT, threshold=0.8)
    assert summary.false_accepts == 2  # 0.35 and 0.8: accepted at d <= threshold
    assert summary.false_rejects == 2  # 0.9 and 1.5
    assert (summary.false_accept_rate, summary.false_reject_rate) == pytest.approx((2 / 6, 2 / 5))
    assert summary.text == "threshold 0.80: 2 false accepts (33.3 %), 2 false rejects (40.0 %)"
    assert threshold_summary(SAME, DIFFERENT, threshold=0.0).text == (
        "threshold 0.00: 0 false accepts (0.0 %), 5 false rejects (100.0 %)"
    )


def test_threshold_functions_refuse_bad_input():
    with pytest.raises(ValueError, match="same_distances must be a non-empty 1-D tensor"):
        roc_curve(torch.tensor([]), DIFFERENT)
    with pytest.raises(ValueError, match="different_distances contains NaN"):
        equal_error_rate(SAME, torch.tensor([float("nan")]))
    with pytest.raises(TypeError, match="floating tensor"):
        threshold_summary(SAME, torch.tensor([1, 2]), threshold=1.0)
    with pytest.raises(ValueError, match="far must be a false-accept rate between 0 and 1"):
        threshold_at_far(SAME, DIFFERENT, far=1.5)


def test_a_negative_zero_threshold_is_shown_as_zero():
    assert threshold_summary(SAME, DIFFERENT, threshold=-0.0).text.startswith("threshold 0.00:")
