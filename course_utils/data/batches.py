"""From a labelled picture set to what the triplet loss needs: splits, P x K batches, triplets.

Everything works on index tensors (which pictures), so it serves every data set alike. A triplet
(anchor A, positive P, negative N) needs two different pictures of one person and a picture of
someone else: a set with one picture per person is refused with a message that says so (F8).
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Sampler

from course_utils._validate import check_choice, check_labels, check_tensor, check_whole_number

# Index triplets: (anchor_idx, positive_idx, negative_idx), three 1-D long tensors of equal length.
Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

_NEEDS_POSITIVE = (
    "A triplet needs an anchor A and a positive P, two different pictures of the same person, "
    "besides a negative N of someone else: the loss max(d(A,P) - d(A,N) + alpha, 0) learns by "
    "pulling P towards A while pushing N away, and with one picture per person there is no "
    "(A, P) pair, so there is nothing to pull together and no triplet at all. Collect several "
    "pictures of each person (the course's running example has 10,000 pictures of 1,000 "
    "persons, about 10 each)."
)


class TripletCount(NamedTuple):
    """How many ordered anchor-positive pairs and valid triplets a labelled set holds (see count_triplets)."""

    anchor_positive_pairs: int
    triplets: int


def keyed_generator(seed: int, *keys: int) -> torch.Generator:
    """A fresh CPU torch.Generator whose numbers depend on the non-negative ints (seed, *keys) only.

    NumPy's SeedSequence mixes the numbers, so nearby keys (epochs, stream numbers) give unrelated streams.
    """
    for value, name in [(seed, "seed"), *((key, "key") for key in keys)]:
        check_whole_number(value, name, minimum=0)
    state = np.random.SeedSequence([seed, *keys]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def count_triplets(labels: torch.Tensor) -> TripletCount:
    """Count anchor-positive pairs and valid triplets of (N,) integer labels, as Python ints (no overflow).

    Each of the n_c anchors of identity c has n_c - 1 positives and N - n_c negatives: sum_c n_c (n_c - 1)
    pairs and sum_c n_c (n_c - 1) (N - n_c) triplets; 10,000 pictures of 1,000 persons give 90,000 pairs
    and 90,000 * 9,990 = 899,100,000 triplets.
    """
    sizes = torch.unique(_check_label_vector(labels).cpu(), return_counts=True)[1].tolist()
    pairs = sum(n * (n - 1) for n in sizes)
    return TripletCount(pairs, sum(n * (n - 1) * (len(labels) - n) for n in sizes))


def split_by_identity(
    labels: torch.Tensor, test_fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split pictures so that no person is on both sides: train on some, test one-shot on others.

    Args:
        labels: (N,) integer identity ids, at least 2 identities.
        test_fraction: share of the identities (not pictures) held out, in (0, 1); the count is
            rounded and kept between 1 and (identities - 1).
    Returns:
        train_idx, test_idx: ascending long CPU indices into labels, disjoint in identity, covering all.
    """
    labels = _check_label_vector(labels).cpu()
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}.")
    identities = torch.unique(labels)
    if len(identities) < 2:
        raise ValueError(
            f"labels hold {len(identities)} identity; a split by identity needs at least 2 "
            "(one side to train on, the other to test on)."
        )
    n_test = min(max(round(test_fraction * len(identities)), 1), len(identities) - 1)
    order = torch.randperm(len(identities), generator=keyed_generator(seed))
    is_test = torch.isin(labels, identities[order[:n_test]])
    return (~is_test).nonzero().flatten(), is_test.nonzero().flatten()


def one_shot_split(labels: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Enrol one random picture of each identity; every other picture becomes a query (one-shot, F9).

    Returns:
        enrol_idx: (identities,) long indices, one per identity in increasing identity order.
        query_idx: (N - identities,) ascending long indices of the other pictures.
    """
    labels = _check_label_vector(labels).cpu()
    if len(labels) == 0 or len(torch.unique(labels)) == len(labels):
        raise ValueError(
            "one-shot evaluation needs at least one identity with 2 pictures: one to enrol "
            "and one to recognise, but every identity in labels has a single picture."
        )
    order = _shuffled_by_identity(labels, keyed_generator(seed))
    sizes = torch.unique_consecutive(labels[order], return_counts=True)[1]
    enrol_idx = order[torch.cumsum(sizes, dim=0) - sizes]  # the first of each identity
    is_query = torch.ones(len(labels), dtype=torch.bool)
    is_query[enrol_idx] = False
    return enrol_idx, is_query.nonzero().flatten()


class PKBatchSampler(Sampler[list[int]]):
    """Batches of P identities x K pictures each: the batch shape online mining needs.

    Use it as ``DataLoader(dataset, batch_sampler=PKBatchSampler(labels, p=16, k=4))`` and call
    ``set_epoch(epoch)`` before each epoch: the order is a pure function of (seed, epoch).

    Each identity's pictures are shuffled and read in a cycle as ceil(n / K) groups of K, so every
    picture is used; an identity with 2 <= n < K pictures gives one group with repeated pictures
    (``fewer_than_k="repeat"``) or is skipped ("skip"), one with a single picture is skipped. The groups,
    identity after identity in a random order, are dealt like cards into B = groups // P batches, so the
    P identities of a batch are distinct (an identity with more than B groups is cut down); the batches
    are then shuffled. With ``world_size`` R > 1 processes every process builds the same plan with B
    rounded down to a multiple of R and keeps the rows rank, rank + R, ...

    Args:
        p: identities per batch (>= 2: an anchor needs negatives).
        k: pictures per identity in a batch (>= 2: an anchor needs a positive).
        rank, world_size: this process's number (0 <= rank < world_size) and the number of processes.

    Attributes, also summarised in one warning: ``skipped_identities`` (never used),
    ``short_identities`` (fewer than K pictures, repeated in their batch), ``capped_identities`` (cut
    down to B groups) and ``duplicates_per_epoch`` (at most this many slots repeat a picture of their batch).
    """

    def __init__(
        self, labels: torch.Tensor, p: int, k: int, seed: int = 0, fewer_than_k: str = "repeat",
        rank: int = 0, world_size: int = 1,
    ):
        labels = _check_label_vector(labels).cpu()
        check_whole_number(p, "p", minimum=2, why="with one identity per batch no anchor has a negative")
        check_whole_number(k, "k", minimum=2, why="with one picture per identity no anchor has a positive in its batch")
        check_whole_number(seed, "seed", minimum=0)
        check_choice(fewer_than_k, "fewer_than_k", ("repeat", "skip"))
        check_whole_number(world_size, "world_size", minimum=1)
        check_whole_number(rank, "rank", minimum=0)
        if rank >= world_size:
            raise ValueError(f"rank must be below world_size ({world_size}), got rank={rank}; ranks count 0, 1, ...")
        self.p, self.k, self.seed, self.epoch = p, k, seed, 0
        self.rank, self.world_size = rank, world_size
        identities, sizes = torch.unique(labels, return_counts=True)
        if int((sizes >= 2).sum()) < 2:
            raise ValueError(
                f"PKBatchSampler needs at least 2 identities with 2 or more pictures, but labels "
                f"have {int((sizes >= 2).sum())}. {_NEEDS_POSITIVE}"
            )
        smallest = k if fewer_than_k == "skip" else 2
        kept = sizes >= smallest
        self.skipped_identities = identities[~kept]
        self.short_identities = identities[kept & (sizes < k)]
        if int(kept.sum()) < p:
            raise ValueError(
                f"p={p} identities per batch, but only {int(kept.sum())} identities have at least "
                f"{smallest} pictures. Lower p, or lower k (with fewer_than_k='skip')."
            )
        # The kept pictures sorted by identity: identity i owns _members[_starts[i] : _starts[i] + _sizes[i]].
        self._members = torch.argsort(labels, stable=True)[kept.repeat_interleave(sizes)]
        self._sizes = sizes[kept]
        self._starts = torch.cumsum(self._sizes, dim=0) - self._sizes
        self._groups, self._num_batches = _capped_groups(self._sizes, p, k, world_size)
        if self._num_batches == 0:
            raise ValueError(_too_few_batches_message(sizes, p, k, world_size, fewer_than_k))
        self.capped_identities = identities[kept][self._groups < (self._sizes + k - 1) // k]
        self.duplicates_per_epoch = int((k - self._sizes).clamp(min=0).sum())
        self._warn_about_dropped_identities()

    def set_epoch(self, epoch: int) -> None:
        """Choose which epoch the next iteration yields."""
        check_whole_number(epoch, "epoch", minimum=0)
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches per epoch of this process (of all processes together: len(self) * world_size)."""
        return self._num_batches // self.world_size

    def __iter__(self):
        yield from self.batches_for_epoch(self.epoch).tolist()

    def batches_for_epoch(self, epoch: int) -> torch.Tensor:
        """(len(self), P * K) long picture indices of this rank's batches in one epoch.

        In each row the K pictures of one identity are next to each other.
        """
        check_whole_number(epoch, "epoch", minimum=0)
        generator = keyed_generator(self.seed, epoch)
        owner = torch.repeat_interleave(torch.arange(len(self._sizes)), self._sizes)
        shuffled = self._members[_shuffled_by_identity(owner, generator)]
        identity_order = torch.randperm(len(self._sizes), generator=generator)
        groups = self._groups[identity_order]
        group_owner = torch.repeat_interleave(identity_order, groups)
        # Rank of each group within its identity: 0, 1, 2, ... restarting at every identity.
        rank = torch.arange(len(group_owner)) - torch.repeat_interleave(torch.cumsum(groups, 0) - groups, groups)
        slot = rank.unsqueeze(1) * self.k + torch.arange(self.k)  # (groups, K) positions in the cycle
        picks = self._starts[group_owner].unsqueeze(1) + slot % self._sizes[group_owner].unsqueeze(1)
        kept = shuffled[picks][: self._num_batches * self.p]
        # Deal group j to batch j mod B: (P, B, K) -> (B, P, K).
        batches = kept.view(self.p, self._num_batches, self.k).transpose(0, 1).reshape(self._num_batches, -1)
        shuffled_batches = batches[torch.randperm(self._num_batches, generator=generator)]
        return shuffled_batches[self.rank :: self.world_size]

    def _warn_about_dropped_identities(self) -> None:
        notes = []
        if len(self.skipped_identities):
            notes.append(f"{len(self.skipped_identities)} identities are skipped (too few pictures)")
        if len(self.short_identities):
            notes.append(
                f"{len(self.short_identities)} identities have fewer than k={self.k} pictures and repeat "
                f"pictures within their batch ({self.duplicates_per_epoch} repeated slots per epoch; a "
                "picture paired with itself has d(A,P) = 0 and teaches nothing)"
            )
        if len(self.capped_identities):
            notes.append(
                f"{len(self.capped_identities)} identities have more groups than there are batches and are cut down"
            )
        if notes:
            warnings.warn("PKBatchSampler: " + "; ".join(notes) + ".", UserWarning, stacklevel=3)


def make_random_triplets(labels: torch.Tensor, n: int, seed: int = 0) -> Triplets:
    """Draw n valid triplets uniformly, for offline training or to show random triplets (F10).

    Anchor uniform over the pictures with a positive, positive uniform over the anchor's other
    pictures, negative uniform over the other identities' pictures; O(N + n), no N x N matrix.

    Returns:
        (anchor_idx, positive_idx, negative_idx): three (n,) long tensors on labels' device.
    """
    labels = _check_label_vector(labels)
    check_whole_number(n, "n", minimum=0)
    check_whole_number(seed, "seed", minimum=0)
    device, labels = labels.device, labels.cpu()
    order = torch.argsort(labels, stable=True)
    sizes = torch.unique_consecutive(labels[order], return_counts=True)[1]
    if len(sizes) == 0 or int(sizes.max()) < 2:
        raise ValueError(f"Every identity in labels has a single picture ({len(labels)} pictures). {_NEEDS_POSITIVE}")
    if len(sizes) < 2:
        raise ValueError(
            "All pictures show the same identity: a triplet also needs a negative, a picture of "
            "another person that the loss pushes away from the anchor. Add other identities."
        )
    starts = torch.cumsum(sizes, dim=0) - sizes
    # Per sorted position: its identity's start and size, and its rank within the identity.
    size_at = torch.repeat_interleave(sizes, sizes)
    start_at = torch.repeat_interleave(starts, sizes)
    rank_at = torch.arange(len(labels)) - start_at
    with_positive = (size_at >= 2).nonzero().flatten()
    uniforms = torch.rand(3, n, generator=keyed_generator(seed), dtype=torch.float64)
    anchor = with_positive[_below(uniforms[0], len(with_positive))]
    size, start = size_at[anchor], start_at[anchor]
    # Positive: step 1 .. size - 1 places further round the anchor's identity (never itself).
    positive = start + (rank_at[anchor] + 1 + _below(uniforms[1], size - 1)) % size
    # Negative: one of the N - size pictures outside the identity; skip over the identity's block.
    outside = _below(uniforms[2], len(labels) - size)
    negative = torch.where(outside < start, outside, outside + size)
    return order[anchor].to(device), order[positive].to(device), order[negative].to(device)


def _capped_groups(sizes: torch.Tensor, p: int, k: int, world_size: int) -> tuple[torch.Tensor, int]:
    """(identities,) groups of K, cut down to at most the batches they fill, and that number of batches.

    The batches of all processes together are rounded down to a multiple of world_size (possibly 0).
    """
    groups = (sizes + k - 1) // k
    while True:
        num_batches = int(groups.sum()) // p // world_size * world_size
        if int(groups.max()) <= num_batches:
            return groups, num_batches
        groups = groups.clamp(max=num_batches)


def _too_few_batches_message(sizes: torch.Tensor, p: int, k: int, world_size: int, fewer_than_k: str) -> str:
    """Why the settings leave a process without a batch, and which single change of p, k or world_size helps."""

    def used_sizes(k: int) -> torch.Tensor:
        return sizes[sizes >= (k if fewer_than_k == "skip" else 2)]

    fixes = []
    for position, (name, lowest) in enumerate((("p", 2), ("k", 2), ("world_size", 1))):
        settings = [p, k, world_size]
        for value in range(settings[position] - 1, lowest - 1, -1):
            settings[position] = value
            used = used_sizes(settings[1])
            if len(used) >= settings[0] and _capped_groups(used, *settings)[1] > 0:
                fixes.append(f"{name}={value}")
                break
    used = used_sizes(k)
    groups = int(((used + k - 1) // k).sum())
    return (
        f"the {len(used)} identities used give {groups} groups of K={k} pictures, enough for {groups // p} "
        f"batches of P={p}, but a batch takes at most one group of each identity (so an identity with more "
        "groups than there are batches is cut down) and the batches are rounded down to a multiple of "
        f"world_size: that leaves 0 batches, fewer than the {world_size} processes (world_size) that each "
        f"need one. Each of these changes gives every process a batch: {', '.join(fixes)}; more identities "
        "help too."
    )


def _check_label_vector(labels) -> torch.Tensor:
    check_tensor(labels, "labels")
    return check_labels(labels, labels.shape[0] if labels.dim() else 0)


def _below(uniforms: torch.Tensor, limit) -> torch.Tensor:
    """Uniform integers in [0, limit) from float64 uniforms in [0, 1); limit may vary per element."""
    limit = torch.as_tensor(limit)
    return torch.minimum((uniforms * limit).long(), limit - 1)


def _shuffled_by_identity(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Indices sorted by identity, in random order within each identity."""
    shuffled = torch.randperm(len(labels), generator=generator)
    return shuffled[torch.argsort(labels[shuffled], stable=True)]
