"""Tests of course_utils.lessons.triplet_kinds: random-batch odds and easy / semi-hard / hard triplets."""
import itertools
from math import comb

import pytest
import torch

from course_utils.data import count_triplets
from course_utils.lessons.triplet_kinds import (
    EASY,
    HARD,
    SEMIHARD,
    classify_triplets,
    random_batch_odds,
    simulate_random_batches,
    triplet_kind_counts,
)


def _enumerate_batches(labels, batch_size):
    """Every batch of a tiny set, with its pair, anchor and triplet counts (the slow obvious way)."""
    for chosen in itertools.combinations(range(len(labels)), batch_size):
        batch = labels[list(chosen)]
        count = count_triplets(batch)
        anchors = sum(int((batch == batch[i]).sum()) >= 2 for i in range(len(batch)))
        yield count.anchor_positive_pairs, anchors, count.triplets


def test_random_batch_odds_match_full_enumeration():
    labels = torch.arange(4).repeat_interleave(3)  # 4 persons x 3 pictures
    batches = list(_enumerate_batches(labels, 4))
    odds = random_batch_odds(4, 3, 4)
    assert len(batches) == comb(12, 4)
    assert odds.no_positive_probability == pytest.approx(sum(p == 0 for p, _, _ in batches) / len(batches))
    assert odds.anchor_positive_pairs == pytest.approx(sum(p for p, _, _ in batches) / len(batches))
    assert odds.anchors == pytest.approx(sum(a for _, a, _ in batches) / len(batches))
    assert odds.triplets == pytest.approx(sum(t for _, _, t in batches) / len(batches))


def test_a_pk_batch_counts_pairs_in_the_same_convention():
    """Ordered (A, P), A != P: a 16 x 4 batch has 16 * 4 * 3 = 192, like count_triplets."""
    labels = torch.arange(16).repeat_interleave(4)
    simulated = simulate_random_batches(labels, batch_size=64, trials=3, seed=0)
    assert simulated.anchor_positive_pairs == count_triplets(labels).anchor_positive_pairs == 192
    assert simulated.anchors == 64 and simulated.no_positive_probability == 0


def test_simulation_agrees_with_exact_odds():
    labels = torch.arange(50).repeat_interleave(4)
    exact = random_batch_odds(50, 4, 12)
    simulated = simulate_random_batches(labels, batch_size=12, trials=4000, seed=1)
    assert simulated.no_positive_probability == pytest.approx(exact.no_positive_probability, abs=0.03)
    assert simulated.anchor_positive_pairs == pytest.approx(exact.anchor_positive_pairs, rel=0.05)
    assert simulated.anchors == pytest.approx(exact.anchors, rel=0.05)
    assert simulated.triplets == pytest.approx(exact.triplets, rel=0.06)


def test_simulation_is_deterministic_and_one_picture_each_has_no_pairs():
    labels = torch.arange(30)
    assert simulate_random_batches(labels, 8, 50, seed=3) == simulate_random_batches(labels, 8, 50, seed=3)
    assert simulate_random_batches(labels, 8, 50).anchor_positive_pairs == 0
    assert simulate_random_batches(labels, 8, 50).anchors == 0
    assert random_batch_odds(30, 1, 8).no_positive_probability == 1.0


@pytest.mark.parametrize("call, error", [
    (lambda: random_batch_odds(10, 2, 21), ValueError),
    (lambda: random_batch_odds(1, 10, 2), ValueError),
    (lambda: random_batch_odds(10, 2.0, 4), TypeError),
    (lambda: simulate_random_batches([0, 1], 2, 5), TypeError),
    (lambda: simulate_random_batches(torch.arange(4), 5, 5), ValueError),
])
def test_bad_arguments_are_refused(call, error):
    with pytest.raises(error):
        call()


def _slow_kind(d_ap, d_an, alpha):
    loss = max(d_ap - d_an + alpha, 0.0)
    if loss == 0:
        return EASY
    return HARD if d_an <= d_ap else SEMIHARD


def test_classification_matches_the_definitions_one_by_one():
    generator = torch.Generator().manual_seed(0)
    d_ap = torch.rand(300, generator=generator, dtype=torch.float64)
    d_an = torch.rand(300, generator=generator, dtype=torch.float64)
    for alpha in (0.0, 0.1, 0.5):
        kinds = classify_triplets(d_ap, d_an, alpha)
        expected = [_slow_kind(p, n, alpha) for p, n in zip(d_ap.tolist(), d_an.tolist())]
        assert kinds.tolist() == expected


def test_boundaries_and_counts():
    d_ap = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5])
    d_an = torch.tensor([0.4, 0.5, 0.6, 0.75, 0.9])
    counts = triplet_kind_counts(d_ap, d_an, alpha=0.25)
    assert (counts.easy, counts.semihard, counts.hard) == (2, 1, 2)
    assert counts.text == "easy: 2, semi-hard: 1, hard: 2"
    assert counts.total == 5 and counts.alpha == 0.25
    # alpha = 0: a tie has loss 0 and is easy; nothing can be semi-hard.
    assert classify_triplets(d_ap, d_an, 0.0).tolist() == [HARD, EASY, EASY, EASY, EASY]


def test_larger_alpha_never_makes_a_triplet_easier():
    generator = torch.Generator().manual_seed(1)
    d_ap, d_an = torch.rand(200, generator=generator), torch.rand(200, generator=generator)
    easy = [triplet_kind_counts(d_ap, d_an, a).easy for a in (0.0, 0.1, 0.2, 0.4, 0.8)]
    assert easy == sorted(easy, reverse=True) and easy[0] > easy[-1]


@pytest.mark.parametrize("d_ap, d_an, alpha, error, message", [
    (torch.ones(3), torch.ones(4), 0.2, ValueError, "one entry per triplet"),
    (torch.ones(3, 1), torch.ones(3, 1), 0.2, ValueError, "d_ap must be a 1-D tensor"),
    (torch.tensor([1.0, -1.0]), torch.ones(2), 0.2, ValueError, "d_ap contains negative values"),
    (torch.ones(2), torch.tensor([1.0, float("nan")]), 0.2, ValueError, "d_an contains NaN"),
    (torch.ones(2), torch.ones(2), -0.1, ValueError, "alpha must be >= 0"),
    (torch.ones(2, dtype=torch.long), torch.ones(2, dtype=torch.long), 0.2, TypeError, "d_ap must be a floating"),
])
def test_bad_distances_are_refused(d_ap, d_an, alpha, error, message):
    with pytest.raises(error, match=message):
        classify_triplets(d_ap, d_an, alpha)


def test_no_triplets_count_as_zero_of_each_kind():
    assert triplet_kind_counts(torch.zeros(0), torch.zeros(0), 0.2).text == "easy: 0, semi-hard: 0, hard: 0"
