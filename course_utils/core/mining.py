"""Choosing triplets from a labelled batch: masks and miners.

A miner looks at a batch of embeddings and returns index triplets
``(anchor_idx, positive_idx, negative_idx)``, three 1-D long tensors of equal
length, so a notebook can show and plot exactly which triplets were chosen. The
losses in `course_utils.core.losses` consume them, or use fused paths that give the
same numbers without materialising the indices.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils._validate import check_choice, check_embeddings, check_labels, check_metric, check_whole_number
from course_utils.data.batches import Triplets, count_triplets, make_random_triplets
from course_utils.core.distances import pairwise_distances

STRATEGIES = ("all", "hard", "semihard", "random")


def anchor_positive_mask(labels: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: mask[a, p] is True when a != p and labels[a] == labels[p]."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    return same.fill_diagonal_(False)  # a fresh tensor, so the in-place fill is safe


def anchor_negative_mask(labels: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: mask[a, n] is True when labels[a] != labels[n]."""
    return labels.unsqueeze(0) != labels.unsqueeze(1)


def valid_triplet_mask(labels: torch.Tensor) -> torch.Tensor:
    """(B, B, B) bool: mask[a, p, n] is True for every valid triplet.

    B^3 entries: meant for small teaching batches. The losses never build it.
    """
    return anchor_positive_mask(labels).unsqueeze(2) & anchor_negative_mask(labels).unsqueeze(1)


def hardest_pairs(dist: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each anchor its farthest positive and closest negative in a distance matrix.

    Args:
        dist: (B, B) distances; labels: (B,) integer labels.
    Returns:
        positive_idx (B,), negative_idx (B,) and has_both (B,) bool: whether the anchor has
        at least one positive and one negative (only those anchors form a triplet).
    """
    anchor_positive = anchor_positive_mask(labels)
    anchor_negative = anchor_negative_mask(labels)
    # Distances are >= 0, so -1 can never win the max: masked-out entries are ignored.
    positive_idx = torch.where(anchor_positive, dist, -1).argmax(dim=1)
    biggest = torch.finfo(dist.dtype).max
    negative_idx = torch.where(anchor_negative, dist, biggest).argmin(dim=1)
    has_both = anchor_positive.any(dim=1) & anchor_negative.any(dim=1)
    return positive_idx, negative_idx, has_both


def sort_rows(values: torch.Tensor, descending: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row of a float matrix of numbers >= 0 (distances): (sorted values, order).

    IEEE floats >= 0 are ordered like their bit patterns read as integers, and torch sorts
    integers about a third faster than floats on the CPU, so the bits are sorted.
    """
    bits = values.view(torch.int32 if values.element_size() == 4 else torch.int64)  # no copy
    sorted_bits, order = bits.sort(dim=1, descending=descending)
    return sorted_bits.view(values.dtype), order


def _running(marked: torch.Tensor, last: bool) -> torch.Tensor:
    """(B, n) bool -> (B, n) long: for each k, the last marked position <= k (-1 if none) or,
    with last=False, the first marked position >= k (n if none). Scanned as floats (exact
    below 2^24): torch's cummax and cummin are several times faster on the CPU for floats.
    """
    n = marked.shape[1]
    position = torch.arange(n, device=marked.device, dtype=torch.float32)
    if last:
        return torch.where(marked, position, -1.0).cummax(dim=1).values.long()
    return torch.where(marked, position, float(n)).flip(1).cummin(dim=1).values.flip(1).long()  # from the right


def run_starts(sorted_rows: torch.Tensor) -> torch.Tensor:
    """(B, n) sorted rows -> (B, n) long: where the run of entries equal to entry [a, j] starts.

    The entries before it are strictly smaller (ascending rows) or larger (descending): what
    "strictly closer" and "strictly farther" need when distances tie.
    """
    new_run = F.pad(sorted_rows[:, 1:] != sorted_rows[:, :-1], (1, 0), value=True)  # (B, n): a run starts at j
    return _running(new_run, last=True)


def run_lasts(sorted_rows: torch.Tensor) -> torch.Tensor:
    """(B, n) sorted rows -> (B, n) long: where the run of entries equal to entry [a, j] ends (its last entry)."""
    next_is_new = F.pad(sorted_rows[:, 1:] != sorted_rows[:, :-1], (0, 1), value=True)  # a run starts at j + 1
    return _running(next_is_new, last=False)


def semihard_negative_columns(dist: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The semi-hard negative of every pair (a, j) in TensorFlow Addons' sense, in O(B^2 log B).

    For a pair (a, p): the closest negative n with d(a, n) > d(a, p) (strictly), else the
    farthest negative. Instead of comparing every negative with every positive (B^3), each
    row of the distance matrix is sorted once, from the farthest to the closest: the chosen
    negative is the last negative before the run of distances equal to d(a, p).

    Args:
        dist: (B, B) distances (not differentiated); labels: (B,) integer labels.
    Returns:
        (B, B) long: column of the negative chosen for (a, j); meaningful for positive pairs
        whose anchor has a negative.
    """
    sorted_dist, order = sort_rows(dist, descending=True)  # (B, B); order[a, k]: column at rank k
    is_negative = anchor_negative_mask(labels).gather(1, order)  # (B, B) in sorted order
    # last_negative[a, k]: last negative at rank < k (< 0: none, no negative is that far); the
    # mask is shifted one rank to the right, so its positions are one more than the ranks.
    last_negative = _running(F.pad(is_negative[:, :-1], (1, 0), value=False), last=True) - 1  # (B, B)
    chosen = last_negative.gather(1, run_starts(sorted_dist))  # (B, B): closest negative strictly farther
    farthest = (is_negative.cumsum(dim=1, dtype=torch.int32) == 0).sum(dim=1, keepdim=True)  # (B, 1): first negative
    chosen = torch.where(chosen >= 0, chosen, farthest).clamp_max(dist.shape[1] - 1)  # a has none: unused
    chosen_column = order.gather(1, chosen)  # (B, B), still in sorted order
    return torch.empty_like(order).scatter_(1, order, chosen_column)  # back to column order: [a, j]


def semihard_negatives(dist: torch.Tensor, labels: torch.Tensor) -> Triplets:
    """Semi-hard triplets in TensorFlow Addons' sense, one per positive pair (see ``semihard_negative_columns``).

    Args:
        dist: (B, B) distances; labels: (B,) integer labels.
    Returns:
        (anchor_idx, positive_idx, negative_idx) for every positive pair whose anchor has a negative.
    """
    has_negative = anchor_negative_mask(labels).any(dim=1, keepdim=True)  # (B, 1)
    anchor_idx, positive_idx = (anchor_positive_mask(labels) & has_negative).nonzero(as_tuple=True)
    negatives = semihard_negative_columns(dist.detach(), labels)
    return anchor_idx, positive_idx, negatives[anchor_idx, positive_idx]


def all_triplets(labels: torch.Tensor) -> Triplets:
    """Every valid triplet, enumerated pair by pair (memory ~ #triplets, not B^3)."""
    anchor_idx, positive_idx = anchor_positive_mask(labels).nonzero(as_tuple=True)
    pair_idx, negative_idx = anchor_negative_mask(labels)[anchor_idx].nonzero(as_tuple=True)
    return anchor_idx[pair_idx], positive_idx[pair_idx], negative_idx


def mine_triplets(embeddings: torch.Tensor, labels: torch.Tensor, strategy: str = "all",
                  metric: str = "squared_euclidean", num_triplets: int | None = None,
                  generator: torch.Generator | None = None) -> Triplets:
    """Choose triplets from a batch.

    Args:
        embeddings: (B, D) encodings.
        labels: (B,) integer identity labels.
        strategy: "all" (every valid triplet), "hard" (batch-hard: one per anchor with its
            farthest positive and closest negative), "semihard" (one per positive pair, see
            `semihard_negatives`) or "random" (num_triplets at random, as `data.make_random_triplets` draws them).
        metric: distance used to rank candidates.
        num_triplets: how many triplets "random" draws (default: B).
        generator: torch.Generator for "random", for repeatable draws.
    Returns:
        (anchor_idx, positive_idx, negative_idx): three (T,) long tensors; T may be 0.
    """
    check_embeddings(embeddings)
    labels = check_labels(labels, embeddings.shape[0], embeddings.device)
    check_choice(strategy, "strategy", STRATEGIES)
    check_metric(metric)
    if strategy == "all":
        return all_triplets(labels)
    if strategy == "random":
        num_triplets = len(labels) if num_triplets is None else check_whole_number(num_triplets, "num_triplets", 0)
        if count_triplets(labels).triplets == 0:  # nothing to draw from
            return all_triplets(labels)  # three empty index tensors
        return make_random_triplets(labels, num_triplets, generator=generator)
    with torch.no_grad():
        dist = pairwise_distances(embeddings, metric=metric)
    if strategy == "hard":
        positive_idx, negative_idx, has_both = hardest_pairs(dist, labels)
        anchor_idx = has_both.nonzero().flatten()
        return anchor_idx, positive_idx[anchor_idx], negative_idx[anchor_idx]
    return semihard_negatives(dist, labels)
