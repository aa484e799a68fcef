"""Splits, P x K batches and triplet builders of course_utils.data.batches."""
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from course_utils.data import (
    PKBatchSampler,
    count_triplets,
    keyed_generator,
    make_random_triplets,
    one_shot_split,
    split_by_identity,
)
from course_utils.core.mining import valid_triplet_mask


def labels_with_sizes(sizes, seed=0):
    """Labels with sizes[i] pictures of identity 10 * i + 3, in a shuffled order."""
    labels = torch.cat([torch.full((size,), 10 * i + 3) for i, size in enumerate(sizes)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


# ---------------------------------------------------------------- keyed_generator


def test_keyed_generator_is_a_pure_function_of_its_keys():
    first = torch.rand(5, generator=keyed_generator(3, 1))
    assert torch.equal(first, torch.rand(5, generator=keyed_generator(3, 1)))
    assert not torch.equal(first, torch.rand(5, generator=keyed_generator(3, 2)))
    assert not torch.equal(first, torch.rand(5, generator=keyed_generator(4, 1)))


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_keyed_generator_refuses_bad_seeds(seed, error):
    with pytest.raises(error, match="seed"):
        keyed_generator(seed)


# ---------------------------------------------------------------- count_triplets


def brute_force_count(labels):
    labels = labels.tolist()
    n = len(labels)
    pairs = sum(1 for a in range(n) for p in range(n) if a != p and labels[a] == labels[p])
    triplets = sum(
        1
        for a, p, k in itertools.product(range(n), repeat=3)
        if a != p and labels[a] == labels[p] and labels[k] != labels[a]
    )
    return pairs, triplets


@pytest.mark.parametrize("seed", range(6))
def test_count_triplets_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 5, (int(torch.randint(1, 16, (), generator=g)),), generator=g)
    counted = count_triplets(labels)
    assert tuple(counted) == brute_force_count(labels)
    assert counted.triplets == int(valid_triplet_mask(labels).sum())


def test_count_triplets_of_the_running_example():
    labels = torch.arange(1000).repeat_interleave(10)
    assert count_triplets(labels) == (90_000, 899_100_000)


def test_count_triplets_of_one_picture_per_person_is_zero():
    assert count_triplets(torch.arange(7)) == (0, 0)


# ---------------------------------------------------------------- split_by_identity and one_shot_split


def test_split_by_identity_is_disjoint_and_complete():
    labels = labels_with_sizes([3, 1, 5, 2, 4, 6, 2, 2, 3, 7])
    train, test = split_by_identity(labels, test_fraction=0.3, seed=1)
    assert train.dtype == test.dtype == torch.long
    assert torch.equal(torch.sort(torch.cat([train, test]))[0], torch.arange(len(labels)))
    assert not set(labels[train].tolist()) & set(labels[test].tolist())
    assert len(labels[test].unique()) == 3
    assert torch.equal(train, train.sort()[0]) and torch.equal(test, test.sort()[0])


def test_split_by_identity_depends_on_the_seed_only():
    labels = torch.arange(50).repeat_interleave(3)
    assert all(torch.equal(a, b) for a, b in zip(split_by_identity(labels, 0.2, 4), split_by_identity(labels, 0.2, 4)))
    assert not torch.equal(split_by_identity(labels, 0.2, 4)[1], split_by_identity(labels, 0.2, 5)[1])


def test_split_by_identity_keeps_both_sides_non_empty():
    labels = torch.arange(3).repeat_interleave(2)
    for fraction in (0.01, 0.99):
        train, test = split_by_identity(labels, fraction)
        assert len(train) and len(test)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, True])
def test_split_by_identity_refuses_bad_fractions(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        split_by_identity(torch.arange(4), fraction)


def test_split_by_identity_needs_two_identities():
    with pytest.raises(ValueError, match="at least 2"):
        split_by_identity(torch.zeros(5, dtype=torch.long))


def test_one_shot_split_enrols_one_picture_per_identity():
    labels = labels_with_sizes([3, 1, 5, 2, 4])
    enrol, query = one_shot_split(labels, seed=2)
    assert labels[enrol].tolist() == sorted(labels.unique().tolist())
    assert torch.equal(torch.sort(torch.cat([enrol, query]))[0], torch.arange(len(labels)))
    assert torch.equal(query, query.sort()[0])
    assert all(torch.equal(a, b) for a, b in zip(one_shot_split(labels, seed=2), (enrol, query)))


def test_one_shot_split_enrols_every_picture_sometimes():
    labels = torch.tensor([0, 0, 0, 1, 1])
    enrolled = {int(i) for seed in range(40) for i in one_shot_split(labels, seed=seed)[0]}
    assert enrolled == set(range(5))


def test_one_shot_split_refuses_single_pictures():
    with pytest.raises(ValueError, match="one to enrol"):
        one_shot_split(torch.arange(5))


# ---------------------------------------------------------------- PKBatchSampler


def check_batches(sampler, labels, batches):
    """Every batch: P distinct identities, K pictures each, next to each other."""
    p, k = sampler.p, sampler.k
    assert batches.shape == (len(sampler), p * k)
    by_identity = labels[batches].view(len(sampler), p, k)
    assert bool((by_identity == by_identity[:, :, :1]).all()), "the K pictures of a block share an identity"
    for row in by_identity[:, :, 0]:
        assert len(row.unique()) == p, "the P identities of a batch are distinct"


def test_pk_batches_of_the_running_example():
    labels = torch.arange(40).repeat_interleave(10)
    sampler = PKBatchSampler(labels, p=8, k=4, seed=0)
    batches = sampler.batches_for_epoch(0)
    check_batches(sampler, labels, batches)
    assert len(sampler) == 40 * 3 // 8  # ceil(10 / 4) = 3 groups per identity
    # Every picture is used in the epoch; the last group of an identity repeats some of its
    # pictures, but never within one batch.
    assert set(batches.flatten().tolist()) == set(range(400))
    assert all(len(set(row)) == len(row) for row in batches.tolist())


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=2, max_size=14),
    p=st.integers(2, 5),
    k=st.integers(2, 5),
    seed=st.integers(0, 3),
)
def test_pk_sampler_invariants_on_uneven_identities(sizes, p, k, seed):
    labels = labels_with_sizes(sizes, seed)
    eligible = [size for size in sizes if size >= 2]
    if len(eligible) < max(p, 2):
        with pytest.raises(ValueError):
            PKBatchSampler(labels, p=p, k=k, seed=seed)
        return
    sampler = PKBatchSampler(labels, p=p, k=k, seed=seed)
    batches = sampler.batches_for_epoch(1)
    check_batches(sampler, labels, batches)
    # Coverage: identities with one picture never appear; of the others every picture
    # appears, except in the at most p - 1 groups left over when p does not divide the
    # number of groups (unless an identity had to be cut down).
    seen = set(batches.flatten().tolist())
    singles = {i for i in range(len(labels)) if sizes[(int(labels[i]) - 3) // 10] == 1}
    assert not seen & singles
    groups = sum(-(-size // k) for size in eligible)
    if max(-(-size // k) for size in eligible) <= groups // p:  # no identity had to be cut down
        left_over = groups % p
        assert len(seen) >= len(labels) - len(singles) - left_over * k
        if left_over == 0:
            assert len(seen) == len(labels) - len(singles)


def test_pk_order_is_a_pure_function_of_seed_and_epoch():
    labels = torch.arange(30).repeat_interleave(6)
    sampler = PKBatchSampler(labels, p=5, k=3, seed=7)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    assert epochs[0] != epochs[1] != epochs[2]
    resumed = PKBatchSampler(labels, p=5, k=3, seed=7)
    resumed.set_epoch(2)
    assert list(resumed) == epochs[2]
    assert list(resumed) == epochs[2], "iterating twice without set_epoch repeats the epoch"
    assert list(PKBatchSampler(labels, p=5, k=3, seed=8)) != epochs[0]


def test_pk_sampler_feeds_a_dataloader():
    labels = torch.arange(12).repeat_interleave(5)
    dataset = TensorDataset(torch.arange(60).float(), labels)
    sampler = PKBatchSampler(labels, p=4, k=5, seed=0)
    batches = list(DataLoader(dataset, batch_sampler=sampler))
    assert len(batches) == len(sampler) == 3
    for pictures, batch_labels in batches:
        assert pictures.shape == (20,)
        assert len(batch_labels.unique()) == 4


def test_pk_identities_with_fewer_than_k_pictures_repeat_some_within_their_block():
    labels = labels_with_sizes([2, 3, 6, 6, 6, 6])
    sampler = PKBatchSampler(labels, p=3, k=4)
    batches = sampler.batches_for_epoch(0)
    check_batches(sampler, labels, batches)
    for block in batches.view(-1, 4).tolist():
        identity = int(labels[block[0]])
        distinct = len(set(block))
        assert distinct == {3: 2, 13: 3}.get(identity, 4)


def test_pk_single_picture_identities_are_skipped():
    labels = labels_with_sizes([1, 1, 4, 4, 4])
    used = set(labels[PKBatchSampler(labels, p=2, k=2).batches_for_epoch(0)].flatten().tolist())
    assert used == {23, 33, 43}


def test_pk_an_identity_with_very_many_pictures_is_cut_down_to_one_group_per_batch():
    labels = labels_with_sizes([40, 2, 2, 2])
    sampler = PKBatchSampler(labels, p=2, k=2)
    assert len(sampler) == 3  # 23 groups would fill 11 batches, but only 3 identities besides the big one
    check_batches(sampler, labels, sampler.batches_for_epoch(0))


def test_pk_refuses_a_set_without_positives():
    with pytest.raises(ValueError, match="needs p=4 identities with 2 or more pictures, but labels have 0.*anchor"):
        PKBatchSampler(torch.arange(20), p=4, k=2)
    with pytest.raises(ValueError, match="labels have 1; lower p or add identities"):
        PKBatchSampler(torch.tensor([0, 0, 0, 1, 2, 3]), p=2, k=2)


def test_pk_a_world_size_that_leaves_a_rank_without_batches_is_refused_at_construction():
    """Issue 18: 51 groups of K=2 fill 25 batches, but one identity holds 50 of them and a batch takes at most one."""
    labels = torch.cat([torch.zeros(100), torch.ones(2)]).long()
    with pytest.raises(ValueError, match="leave 0 batches for the 2 processes \\(world_size\\).*Lower p, k or world"):
        PKBatchSampler(labels, p=2, k=2, rank=1, world_size=2)
    assert len(PKBatchSampler(labels, p=2, k=2, world_size=1)) == 1


def test_pk_ranks_share_one_plan_rounded_down_to_a_multiple_of_world_size():
    labels = torch.arange(20).repeat_interleave(4)  # 40 groups of 2: 10 batches of P=4, 9 for 3 ranks
    samplers = [PKBatchSampler(labels, p=4, k=2, seed=3, rank=r, world_size=3) for r in range(3)]
    parts = [sampler.batches_for_epoch(1) for sampler in samplers]
    assert [len(part) for part in parts] == [len(sampler) for sampler in samplers] == [3, 3, 3]
    rows = [tuple(row) for part in parts for row in part.tolist()]
    assert len(set(rows)) == 9, "no batch is on two ranks"
    for sampler, part in zip(samplers, parts):
        check_batches(sampler, labels, part)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"p": 1, "k": 4}, ValueError, "negative"),
        ({"p": 4, "k": 1}, ValueError, "positive"),
        ({"p": 4.0, "k": 2}, TypeError, "p must be a whole number \\(an int\\), got float 4.0"),
        ({"p": 9, "k": 2}, ValueError, "labels have 8"),
        ({"p": 2, "k": 2, "seed": -3}, ValueError, "seed"),
        ({"p": 2, "k": 2, "rank": 2, "world_size": 2}, ValueError, "rank must be below world_size"),
    ],
)
def test_pk_refuses_bad_settings(kwargs, error, message):
    with pytest.raises(error, match=message):
        PKBatchSampler(torch.arange(8).repeat_interleave(3), **kwargs)


def test_pk_set_epoch_refuses_negative_epochs():
    sampler = PKBatchSampler(torch.arange(4).repeat_interleave(2), p=2, k=2)
    with pytest.raises(ValueError, match="epoch"):
        sampler.set_epoch(-1)


# ---------------------------------------------------------------- make_random_triplets


def test_random_triplets_are_valid_and_repeatable():
    labels = labels_with_sizes([1, 3, 5, 2, 4])
    anchor, positive, negative = make_random_triplets(labels, 500, seed=3)
    assert anchor.dtype == torch.long and anchor.shape == (500,)
    assert bool((anchor != positive).all())
    assert bool((labels[anchor] == labels[positive]).all())
    assert bool((labels[anchor] != labels[negative]).all())
    again = make_random_triplets(labels, 500, seed=3)
    assert all(torch.equal(a, b) for a, b in zip((anchor, positive, negative), again))
    assert not torch.equal(anchor, make_random_triplets(labels, 500, seed=4)[0])


def test_random_triplets_follow_the_documented_distribution():
    """Compare observed frequencies with the exact probabilities, enumerated the slow way."""
    labels = torch.tensor([5, 5, 5, 9, 9, 2])  # identity 2 has no positive: never an anchor
    draws = 60_000
    anchor, positive, negative = make_random_triplets(labels, draws, seed=0)
    sizes = {c: int((labels == c).sum()) for c in labels.tolist()}
    with_positive = [i for i in range(6) if sizes[int(labels[i])] >= 2]
    observed = torch.zeros(6, 6, 6)
    observed.index_put_((anchor, positive, negative), torch.ones(draws), accumulate=True)
    for a, p, n in itertools.product(range(6), repeat=3):
        c = int(labels[a])
        valid = a in with_positive and p != a and int(labels[p]) == c and int(labels[n]) != c
        expected = 1 / len(with_positive) / (sizes[c] - 1) / (6 - sizes[c]) if valid else 0.0
        # 60,000 draws: a frequency near 1/30 has a standard error below 0.001.
        assert abs(observed[a, p, n] / draws - expected) < 0.004, (a, p, n)


def test_zero_random_triplets():
    anchor, positive, negative = make_random_triplets(torch.tensor([0, 0, 1]), 0)
    assert anchor.shape == positive.shape == negative.shape == (0,)


def test_random_triplets_refuse_one_picture_per_person():
    with pytest.raises(ValueError, match="anchor A and a positive P") as error:
        make_random_triplets(torch.arange(10), 5)
    assert "no (A, P) pair" in str(error.value)


def test_random_triplets_refuse_a_single_identity():
    with pytest.raises(ValueError, match="negative"):
        make_random_triplets(torch.zeros(4, dtype=torch.long), 5)
