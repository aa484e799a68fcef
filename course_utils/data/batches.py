"""From a labelled picture set to what the triplet loss needs: splits, P x K batches, triplets, as indices."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Sampler

from course_utils._validate import check_labels, check_tensor, check_whole_number

Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (anchor_idx, positive_idx, negative_idx), 1-D long

_NEEDS_POSITIVE = ("A triplet needs an anchor A and a positive P, two different pictures of the same person: with "
                   "one picture per person there is no (A, P) pair, so no triplet. Collect several pictures of each.")


class TripletCount(NamedTuple):
    anchor_positive_pairs: int
    triplets: int


def keyed_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU torch.Generator that depends only on the ints (seed, *keys) >= 0; nearby keys give unrelated streams."""
    for name, value in (("seed", seed), *((f"key {i}", key) for i, key in enumerate(keys))):
        check_whole_number(value, name, minimum=0)
    state = np.random.SeedSequence([seed, *keys]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def count_triplets(labels: torch.Tensor) -> TripletCount:
    """Anchor-positive pairs, sum_c n_c (n_c - 1), and valid triplets, sum_c n_c (n_c - 1) (N - n_c), of (N,) labels."""
    sizes = torch.unique(_check_label_vector(labels).cpu(), return_counts=True)[1].tolist()
    pairs = sum(n * (n - 1) for n in sizes)
    return TripletCount(pairs, sum(n * (n - 1) * (len(labels) - n) for n in sizes))


def split_by_identity(labels: torch.Tensor, test_fraction: float = 0.2,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ascending (train_idx, test_idx) with no person on both sides: test_fraction of the identities is held out."""
    labels = _check_label_vector(labels).cpu()
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}.")
    identities = torch.unique(labels)
    if len(identities) < 2:
        raise ValueError(f"labels hold {len(identities)} identity; a split by identity needs at least 2.")
    n_test = min(max(round(test_fraction * len(identities)), 1), len(identities) - 1)
    order = torch.randperm(len(identities), generator=keyed_generator(seed))
    is_test = torch.isin(labels, identities[order[:n_test]])
    return (~is_test).nonzero().flatten(), is_test.nonzero().flatten()


def one_shot_split(labels: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Enrol one random picture of each identity (in increasing identity order); the others are queries."""
    labels = _check_label_vector(labels).cpu()
    if len(torch.unique(labels)) == len(labels):
        raise ValueError("one-shot evaluation needs an identity with 2 or more pictures: one to enrol, one to test.")
    order = _shuffled_by_identity(labels, keyed_generator(seed))
    sizes = torch.unique_consecutive(labels[order], return_counts=True)[1]
    enrol_idx = order[torch.cumsum(sizes, dim=0) - sizes]  # the first of each identity
    return enrol_idx, torch.isin(torch.arange(len(labels)), enrol_idx, invert=True).nonzero().flatten()


class PKBatchSampler(Sampler[list[int]]):
    """Batches of P identities x K pictures each: the batch shape online mining needs.

    Use ``DataLoader(dataset, batch_sampler=PKBatchSampler(labels, p=16, k=4))`` and call ``set_epoch(epoch)``
    before each epoch: the order depends on (seed, epoch) only. Each identity's shuffled pictures are read in
    a cycle as ceil(n / K) groups of K (n < K repeats some, n = 1 is skipped), dealt into B = groups // P
    batches of P distinct identities (one with more than B groups is cut down). With world_size R > 1 every
    process builds the same plan, B rounded down to a multiple of R, and keeps batches rank, rank + R, ...
    """

    def __init__(self, labels: torch.Tensor, p: int, k: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        labels = _check_label_vector(labels).cpu()
        check_whole_number(p, "p", minimum=2, why="with one identity per batch no anchor has a negative")
        check_whole_number(k, "k", minimum=2, why="with one picture per identity no anchor has a positive in its batch")
        check_whole_number(seed, "seed", minimum=0)
        check_whole_number(world_size, "world_size", minimum=1)
        check_whole_number(rank, "rank", minimum=0)
        if rank >= world_size:
            raise ValueError(f"rank must be below world_size ({world_size}), got rank={rank}; ranks count 0, 1, ...")
        self.p, self.k, self.seed, self.epoch, self.rank, self.world_size = p, k, seed, 0, rank, world_size
        sizes = torch.unique(labels, return_counts=True)[1]
        kept = sizes >= 2
        if int(kept.sum()) < p:
            raise ValueError(f"PKBatchSampler needs p={p} identities with 2 or more pictures, but labels have "
                             f"{int(kept.sum())}; lower p or add identities. {_NEEDS_POSITIVE}")
        # The kept pictures sorted by identity: identity i owns _members[_starts[i] : _starts[i] + _sizes[i]].
        self._members = torch.argsort(labels, stable=True)[kept.repeat_interleave(sizes)]
        self._sizes = sizes[kept]
        self._starts = torch.cumsum(self._sizes, dim=0) - self._sizes
        self._groups = (self._sizes + k - 1) // k
        while True:  # cut identities down to the number of batches until that number holds still
            self._num_batches = int(self._groups.sum()) // p // world_size * world_size
            if int(self._groups.max()) <= self._num_batches:
                break
            self._groups = self._groups.clamp(max=self._num_batches)
        if self._num_batches == 0:
            raise ValueError(f"p={p}, k={k} leave 0 batches for the {world_size} processes (world_size) that each "
                             "need one (a batch takes one group of K pictures from each of P identities; batches are "
                             "rounded down to a multiple of world_size). Lower p, k or world_size, or add identities.")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_whole_number(epoch, "epoch", minimum=0)

    def __len__(self) -> int:
        """Batches per epoch of this process."""
        return self._num_batches // self.world_size

    def __iter__(self):
        yield from self.batches_for_epoch(self.epoch).tolist()

    def batches_for_epoch(self, epoch: int) -> torch.Tensor:
        """(len(self), P * K) long picture indices of this rank's batches; an identity's K pictures are adjacent."""
        generator = keyed_generator(self.seed, check_whole_number(epoch, "epoch", minimum=0))
        owner = torch.repeat_interleave(torch.arange(len(self._sizes)), self._sizes)
        shuffled = self._members[_shuffled_by_identity(owner, generator)]
        identity_order = torch.randperm(len(self._sizes), generator=generator)
        groups = self._groups[identity_order]
        group_owner = torch.repeat_interleave(identity_order, groups)
        # Number of each group within its identity: 0, 1, 2, ... restarting at every identity.
        rank = torch.arange(len(group_owner)) - torch.repeat_interleave(torch.cumsum(groups, 0) - groups, groups)
        slot = rank.unsqueeze(1) * self.k + torch.arange(self.k)  # (groups, K) positions in the cycle
        picks = self._starts[group_owner].unsqueeze(1) + slot % self._sizes[group_owner].unsqueeze(1)
        kept = shuffled[picks][: self._num_batches * self.p]
        # Deal group j to batch j mod B: (P, B, K) -> (B, P, K).
        batches = kept.view(self.p, self._num_batches, self.k).transpose(0, 1).reshape(self._num_batches, -1)
        return batches[torch.randperm(self._num_batches, generator=generator)][self.rank :: self.world_size]


def make_random_triplets(labels: torch.Tensor, n: int, seed: int = 0,
                         generator: torch.Generator | None = None) -> Triplets:
    """n random valid (anchor_idx, positive_idx, negative_idx): anchor uniform among pictures with a positive,
    then positive and negative uniform; three (n,) long tensors on labels' device. A CPU `generator`, when given,
    is drawn from instead of the seed's (the "random" miner passes its own)."""
    labels = _check_label_vector(labels)
    check_whole_number(n, "n", minimum=0)
    device, labels = labels.device, labels.cpu()
    order = torch.argsort(labels, stable=True)
    sizes = torch.unique_consecutive(labels[order], return_counts=True)[1]
    if len(sizes) == 0 or int(sizes.max()) < 2:
        raise ValueError(f"Every identity in labels has a single picture ({len(labels)} pictures). {_NEEDS_POSITIVE}")
    if len(sizes) < 2:
        raise ValueError("All pictures show one identity: a triplet also needs a negative N, another person's picture.")
    starts = torch.cumsum(sizes, dim=0) - sizes
    # Per sorted position: its identity's start and size.
    size_at, start_at = torch.repeat_interleave(sizes, sizes), torch.repeat_interleave(starts, sizes)
    with_positive = (size_at >= 2).nonzero().flatten()
    uniforms = torch.rand(3, n, generator=generator or keyed_generator(seed), dtype=torch.float64)
    anchor = with_positive[_below(uniforms[0], len(with_positive))]
    size, start = size_at[anchor], start_at[anchor]
    # Positive: 1 .. size - 1 places further round the anchor's identity (never itself).
    positive = start + (anchor - start + 1 + _below(uniforms[1], size - 1)) % size
    # Negative: one of the N - size pictures outside the identity; skip over the identity's block.
    outside = _below(uniforms[2], len(labels) - size)
    negative = torch.where(outside < start, outside, outside + size)
    return order[anchor].to(device), order[positive].to(device), order[negative].to(device)


def _check_label_vector(labels) -> torch.Tensor:
    check_tensor(labels, "labels")
    return check_labels(labels, labels.shape[0] if labels.dim() else 0)


def _below(uniforms: torch.Tensor, limit) -> torch.Tensor:
    """Uniform integers in [0, limit) from float64 uniforms in [0, 1); limit may vary per element."""
    return torch.minimum((uniforms * limit).long(), torch.as_tensor(limit) - 1)


def _shuffled_by_identity(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Indices sorted by identity, in random order within each identity."""
    shuffled = torch.randperm(len(labels), generator=generator)
    return shuffled[torch.argsort(labels[shuffled], stable=True)]
