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


def sort_rows(values: torch.Tensor, first_at_ties: torch.Tensor, descending: bool = False) -> torch.Tensor:
    """Sort each row of a (B, n) matrix of numbers >= 0 (distances); among equal values the
    entries where ``first_at_ties`` (B, n) bool is True come first. Returns (B, n) long:
    order[a, k] is the column of row a at rank k.

    The tie rule is what "strictly closer" and "strictly farther" need when distances tie.
    IEEE floats >= 0 are ordered like their bit patterns read as integers, so for float32 each
    entry becomes one int64 key (row, value bits, tie bit) and one flat integer sort orders
    every row (a radix sort for large batches: on one CPU thread 2-3 times faster than sorting
    row by row). float64 has no spare bits: two stable row sorts.
    """
    rows, n = values.shape
    if values.dtype == torch.float64:
        by_tie = (~first_at_ties).to(torch.uint8).argsort(dim=1, stable=True)  # (B, n)
        return by_tie.gather(1, values.gather(1, by_tie).sort(dim=1, descending=descending, stable=True).indices)
    bits = values.view(torch.int32) & 0x7FFFFFFF  # (B, n); the mask turns -0.0 into +0.0
    if descending:
        bits = 0x7FFFFFFF - bits
    row = torch.arange(rows, device=values.device).unsqueeze(1)  # (B, 1)
    keys = bits.long() << 1  # (B, n) int64 keys: the row, then the value bits, then the tie bit
    keys += row << 33
    keys += ~first_at_ties
    return keys.flatten().sort().indices.view(rows, n) - row * n  # (B, n): flat positions -> columns


def semihard_negative_columns(dist: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The semi-hard negative of every pair (a, j) in TensorFlow Addons' sense, in O(B^2 log B).

    For a pair (a, p): the closest negative n with d(a, n) > d(a, p) (strictly), else the
    farthest negative. Instead of comparing every negative with every positive (B^3), each
    row of the distance matrix is sorted once, farthest first, with negatives after the other
    entries at equal distance: the chosen negative is the last negative before p.

    Args:
        dist: (B, B) distances (not differentiated); labels: (B,) integer labels.
    Returns:
        (B, B) long: column of the negative chosen for (a, j); meaningful for positive pairs
        whose anchor has a negative.
    """
    negative = anchor_negative_mask(labels)
    order = sort_rows(dist, first_at_ties=~negative, descending=True)  # (B, B); order[a, k]: column at rank k
    is_negative = negative.gather(1, order)  # (B, B) in sorted order
    farthest = is_negative.to(torch.uint8).argmax(dim=1, keepdim=True)  # (B, 1): rank of the first negative
    # chosen[a, k]: the last negative at a rank < k, else the farthest (the first). A running max of
    # ranks started at the first negative's rank gives both. Ranks as floats: torch's cummax is
    # several times faster on the CPU for floats (exact below 2^24).
    negative_before = F.pad(is_negative[:, :-1], (1, 0), value=False)  # (B, B): rank k - 1 is a negative
    rank_before = torch.arange(-1, dist.shape[1] - 1, device=dist.device, dtype=torch.float32)  # (B,): k - 1
    chosen = torch.where(negative_before, rank_before, farthest.float()).cummax(dim=1).values.long()  # (B, B)
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
