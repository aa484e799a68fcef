"""Triplet losses: one triplet at a time, and fused batch versions with online mining.

The loss of one triplet is L(A, P, N) = max(d(A,P) - d(A,N) + alpha, 0). The batch
losses compute the (B, B) distance matrix once and choose triplets inside it:

* ``batch_all_triplet_loss``  every valid triplet, mean over those with positive loss;
* ``batch_hard_triplet_loss`` per anchor the farthest positive and closest negative;
* ``batch_semihard_triplet_loss`` per positive pair FaceNet's semi-hard negative.

None of them builds a B x B x B tensor: batch-all and semi-hard sort each anchor's
negative distances once and use binary search, O(B^2 log B) time and O(B^2) memory.
All return float32 (float64 for float64 input), also under autocast.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F

from course_utils.core._validate import (
    check_alpha,
    check_choice,
    check_embeddings,
    check_labels,
    check_metric,
    check_nonnegative,
    check_same_shape,
)
from course_utils.core.distances import matrix_distances, row_distances
from course_utils.core.mining import anchor_negative_mask, anchor_positive_mask, hardest_pairs, semihard_negatives

REDUCTIONS = ("none", "sum", "mean")
MININGS = ("all", "hard", "semihard")


class DegenerateBatchWarning(UserWarning):
    """The batch holds no valid triplet, so the loss is 0 and nothing is learned from it."""


class TripletStats(NamedTuple):
    """What a batch loss averaged over.

    The fields have the same names as ContrastiveStats', so code that reports either reads
    ``num_terms`` and ``num_active``.

    num_terms: triplets the loss considered (valid triplets for batch-all, anchors for
        batch-hard, positive pairs for semi-hard).
    num_active: how many of them had a positive loss (the ones that teach the network).
    """

    num_terms: int
    num_active: int

    @property
    def active_fraction(self) -> float:
        """num_active / num_terms, 0.0 when the loss considered nothing."""
        return self.num_active / self.num_terms if self.num_terms else 0.0


def _zero_loss(embeddings: torch.Tensor, dtype: torch.dtype, why: str) -> torch.Tensor:
    warnings.warn(
        f"{why} The loss is 0 and this batch teaches nothing. Build batches of P identities "
        "x K >= 2 pictures each (see course_utils.data.PKBatchSampler).",
        DegenerateBatchWarning,
        stacklevel=3,
    )
    # Still attached to the graph, so backward() runs and gives zero (finite) gradients. A
    # negative sum times 0 is -0.0, printed "-0.0"; adding +0.0 makes it +0.0 (IEEE: -0 + 0 = +0).
    return embeddings.sum().to(dtype) * 0 + 0.0


def _degenerate_reason(labels: torch.Tensor) -> str:
    if len(labels) < 2:
        return f"The batch has {len(labels)} picture(s)."
    if bool((labels == labels[0]).all()):
        return "Every picture in the batch has the same label, so there is no negative."
    return "No two pictures in the batch share a label, so there is no anchor-positive pair."


def _prepare(embeddings, labels, alpha, metric):
    check_embeddings(embeddings)
    labels = check_labels(labels, embeddings.shape[0], embeddings.device)
    return labels, check_alpha(alpha), check_metric(metric)


def triplet_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    alpha: float = 0.2,
    metric: str = "squared_euclidean",
    reduction: str = "none",
) -> torch.Tensor:
    """Loss of given triplets, L = max(d(A,P) - d(A,N) + alpha, 0) row by row.

    Args:
        anchor, positive, negative: (m, d) encodings; row i is triplet i.
        alpha: margin >= 0.
        metric: "squared_euclidean" (the course's d), "euclidean" or "cosine".
        reduction: "none" gives (m,) losses, "sum" the cost J = sum_i L_i, "mean" J / m.
    Returns:
        (m,) or scalar float tensor.
    """
    alpha = check_alpha(alpha)
    check_metric(metric)
    check_choice(reduction, "reduction", REDUCTIONS)
    for name, x in (("anchor", anchor), ("positive", positive), ("negative", negative)):
        check_embeddings(x, name)
    check_same_shape(anchor, positive, "anchor", "positive")
    check_same_shape(anchor, negative, "anchor", "negative")
    losses = (row_distances(anchor, positive, metric) - row_distances(anchor, negative, metric) + alpha).clamp_min(0)
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.mean() if len(losses) else losses.sum()
    return losses


def batch_all_triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.2,
    metric: str = "squared_euclidean",
    return_stats: bool = False,
):
    """Mean loss over all valid triplets of the batch whose loss is positive.

    For an anchor a and positive p, the negatives with positive loss are those with
    d(a, n) < d(a, p) + alpha =: t. With the negatives of a sorted, they form a prefix of
    length c, and their summed loss is c * t - (sum of that prefix): one binary search and
    one prefix-sum lookup per pair instead of a loop over negatives.

    Args:
        embeddings: (B, D) encodings.
        labels: (B,) integer labels.
        alpha: margin >= 0.
        metric: distance name.
        return_stats: also return TripletStats(valid triplets, triplets with positive loss).
    Returns:
        scalar loss (0 when no triplet has positive loss), and the stats if asked.
    """
    labels, alpha, metric = _prepare(embeddings, labels, alpha, metric)
    dist = matrix_distances(embeddings, None, metric)
    anchor_positive = anchor_positive_mask(labels)
    anchor_negative = anchor_negative_mask(labels)
    num_negatives = anchor_negative.sum(dim=1, keepdim=True)
    num_valid = int((anchor_positive.sum(dim=1) * num_negatives.squeeze(1)).sum())
    if num_valid == 0:
        loss = _zero_loss(embeddings, dist.dtype, _degenerate_reason(labels))
        return (loss, TripletStats(0, 0)) if return_stats else loss

    # Non-negatives get a sentinel larger than any distance and sort to the end of each row.
    biggest = torch.finfo(dist.dtype).max
    sorted_negatives, _ = dist.masked_fill(~anchor_negative, biggest).sort(dim=1)
    is_real = torch.arange(dist.shape[1], device=dist.device) < num_negatives
    # Prefix sums in float64: the difference c * t - prefix would lose digits in float32.
    prefix = F.pad(torch.where(is_real, sorted_negatives.double(), 0).cumsum(dim=1), (1, 0))
    threshold = dist + alpha
    # Left-sided search counts negatives strictly below the threshold (loss exactly 0 is inactive).
    count = torch.searchsorted(sorted_negatives.detach(), threshold.detach(), right=False)
    count = torch.minimum(count, num_negatives).masked_fill(~anchor_positive, 0)
    summed = count * threshold.double() - prefix.gather(1, count)
    total = summed.masked_fill(~anchor_positive, 0).sum().to(dist.dtype)
    num_active = int(count.sum())
    loss = total / num_active if num_active else total * 0
    return (loss, TripletStats(num_valid, num_active)) if return_stats else loss


def batch_hard_triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.2,
    metric: str = "squared_euclidean",
    soft: bool = False,
    return_stats: bool = False,
):
    """Batch-hard loss (Hermans, Beyer, Leibe 2017): each anchor with its hardest pair.

    For each anchor, the farthest positive and the closest negative; the mean is over
    anchors that have at least one positive and one negative (others are dropped, not
    counted as zero).

    Args:
        embeddings: (B, D) encodings.
        labels: (B,) integer labels.
        alpha: margin >= 0 (not used when soft=True).
        metric: distance name.
        soft: use softplus(d(A,P) - d(A,N)) instead of the hinge, the "soft margin".
        return_stats: also return TripletStats(anchors used, anchors with positive loss).
    Returns:
        scalar loss, and the stats if asked.
    """
    labels, alpha, metric = _prepare(embeddings, labels, alpha, metric)
    # Choosing needs the whole matrix but only 2 entries per anchor get a gradient: choose
    # without autograd, then recompute just the chosen distances with it (less memory, faster).
    with torch.no_grad():
        dist = matrix_distances(embeddings, None, metric)
    positive_idx, negative_idx, has_both = hardest_pairs(dist, labels)
    anchors = has_both.nonzero().flatten()
    n = anchors.numel()
    if n == 0:
        loss = _zero_loss(embeddings, dist.dtype, _degenerate_reason(labels))
        return (loss, TripletStats(0, 0)) if return_stats else loss
    # Both chosen distances in one row-wise call: rows [0, n) are d(A,P), rows [n, 2n) d(A,N).
    chosen = torch.cat((positive_idx[anchors], negative_idx[anchors]))
    d = row_distances(embeddings[anchors.repeat(2)], embeddings[chosen], metric)
    gap = d[:n] - d[n:]
    losses = F.softplus(gap) if soft else (gap + alpha).clamp_min(0)
    loss = losses.mean()
    if return_stats:
        return loss, TripletStats(len(losses), int((losses > 0).sum()))
    return loss


def batch_semihard_triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.2,
    metric: str = "squared_euclidean",
    return_stats: bool = False,
):
    """Semi-hard loss as TensorFlow Addons' TripletSemiHardLoss computes it.

    For each positive pair (a, p): the closest negative with d(a, n) > d(a, p); when none
    is farther than p, the farthest negative of a. The mean is over all positive pairs,
    zero-loss pairs included.

    This differs from pytorch-metric-learning's TripletMarginMiner("semihard"), which keeps
    every triplet with d(a,p) < d(a,n) < d(a,p) + alpha (often several per pair, often
    none) and then averages the non-zero losses.

    Args:
        embeddings: (B, D) encodings.
        labels: (B,) integer labels.
        alpha: margin >= 0.
        metric: distance name.
        return_stats: also return TripletStats(positive pairs, pairs with positive loss).
    Returns:
        scalar loss, and the stats if asked.
    """
    labels, alpha, metric = _prepare(embeddings, labels, alpha, metric)
    dist = matrix_distances(embeddings, None, metric)
    anchor_idx, positive_idx, negative_idx = semihard_negatives(dist, labels)
    if anchor_idx.numel() == 0:
        loss = _zero_loss(embeddings, dist.dtype, _degenerate_reason(labels))
        return (loss, TripletStats(0, 0)) if return_stats else loss
    losses = (dist[anchor_idx, positive_idx] - dist[anchor_idx, negative_idx] + alpha).clamp_min(0)
    loss = losses.mean()
    if return_stats:
        return loss, TripletStats(len(losses), int((losses > 0).sum()))
    return loss


_BATCH_LOSSES = {
    "all": batch_all_triplet_loss,
    "hard": batch_hard_triplet_loss,
    "semihard": batch_semihard_triplet_loss,
}


class TripletLoss(torch.nn.Module):
    """Triplet loss with online mining, as a module for training loops.

    Args:
        alpha: margin >= 0.
        mining: "all", "hard" or "semihard" (see the batch_* functions).
        metric: "squared_euclidean", "euclidean" or "cosine".
        soft: soft-margin batch-hard (only with mining="hard").

    Calling it with (embeddings (B, D), labels (B,)) returns the scalar loss; the
    TripletStats of the last call are kept in ``last_stats`` for progress bars and
    diagnostics.
    """

    def __init__(self, alpha: float = 0.2, mining: str = "all", metric: str = "squared_euclidean", soft: bool = False):
        super().__init__()
        self.alpha = check_alpha(alpha)
        self.mining = check_choice(mining, "mining", MININGS)
        self.metric = check_metric(metric)
        if soft and mining != "hard":
            raise ValueError("soft=True is the soft-margin batch-hard loss; use it with mining='hard'.")
        self.soft = soft
        self.last_stats: TripletStats | None = None

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        extra = {"soft": True} if self.soft else {}
        loss, self.last_stats = _BATCH_LOSSES[self.mining](
            embeddings, labels, alpha=self.alpha, metric=self.metric, return_stats=True, **extra
        )
        return loss

    def extra_repr(self) -> str:
        soft = ", soft=True" if self.soft else ""
        return f"alpha={self.alpha}, mining={self.mining!r}, metric={self.metric!r}{soft}"


# ---------------------------------------------------------------------------
# The contrastive loss: pairs instead of triplets.


class ContrastiveStats(NamedTuple):
    """What a contrastive loss averaged over (the same fields as TripletStats).

    num_terms: unordered pairs of the batch (same-person and different-person).
    num_active: pairs with a positive loss: every same-person pair that is not yet at
        distance 0, and every different-person pair closer than the margin.
    """

    num_terms: int
    num_active: int

    @property
    def active_fraction(self) -> float:
        """num_active / num_terms, 0.0 when the batch held no pair."""
        return self.num_active / self.num_terms if self.num_terms else 0.0


def _check_margin(margin) -> float:
    return check_nonnegative(
        margin, "margin", "Different-person pairs closer than the margin (a distance) are pushed "
        "apart; a negative margin would push nothing."
    )


def contrastive_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 1.0,
    metric: str = "euclidean",
    return_stats: bool = False,
):
    """Contrastive loss (Hadsell, Chopra, LeCun 2006) over every pair of the batch.

    For a pair at distance D: a same-person pair pays D^2 / 2 (pulled together), a
    different-person pair pays max(0, margin - D)^2 / 2 (pushed apart until it is at
    least ``margin`` away). Hadsell et al. use the Euclidean distance D = ||a - b||.

    Reduction: the mean over same-person pairs plus the mean over different-person pairs.
    A plain mean over all pairs would let the different-person pairs, (P - 1) K / (K - 1)
    times more numerous in a P x K batch (20 times for 16 x 4), drown the pull term.
    pytorch-metric-learning's ContrastiveLoss with a MeanReducer adds the two means the same way.

    Args:
        embeddings: (B, D) encodings.
        labels: (B,) integer labels.
        margin: distance >= 0 beyond which different-person pairs cost nothing. On the
            unit sphere the Euclidean distance lies in [0, 2].
        metric: the distance D: "euclidean" (Hadsell's), "squared_euclidean" or "cosine".
        return_stats: also return ContrastiveStats(pairs, pairs with positive loss).
    Returns:
        scalar loss, and the stats if asked. A batch without same-person pairs (or without
        different-person pairs) warns with DegenerateBatchWarning; the missing mean counts 0.
    """
    check_embeddings(embeddings)
    labels = check_labels(labels, embeddings.shape[0], embeddings.device)
    margin, metric = _check_margin(margin), check_metric(metric)
    # The Euclidean root is a safe sqrt: duplicate points (D = 0) give a zero gradient, not
    # the NaN of d sqrt(s)/ds = 1 / (2 sqrt(0)).
    dist = matrix_distances(embeddings, None, metric)
    upper = torch.ones_like(dist, dtype=torch.bool).triu(diagonal=1)  # each unordered pair once
    same_pairs = dist[anchor_positive_mask(labels) & upper]
    different_pairs = dist[anchor_negative_mask(labels) & upper]
    pull = same_pairs**2 / 2
    push = (margin - different_pairs).clamp_min(0) ** 2 / 2
    if len(same_pairs) == 0 or len(different_pairs) == 0:
        missing = "same-person" if len(same_pairs) == 0 else "different-person"
        warnings.warn(
            f"{_degenerate_reason(labels)} With no {missing} pair the contrastive loss only "
            f"{'pushes' if len(same_pairs) == 0 else 'pulls'}; the missing term counts 0. Build batches of "
            "P >= 2 identities x K >= 2 pictures each (see course_utils.data.PKBatchSampler).",
            DegenerateBatchWarning,
            stacklevel=2,
        )
    # An empty term's sum is 0, still attached to the graph, so backward() runs.
    loss = (pull.mean() if len(pull) else pull.sum()) + (push.mean() if len(push) else push.sum())
    if return_stats:
        num_active = int((pull > 0).sum()) + int((push > 0).sum())
        return loss, ContrastiveStats(len(pull) + len(push), num_active)
    return loss


class ContrastiveLoss(torch.nn.Module):
    """Contrastive loss over all pairs of a batch, as a module for training loops.

    Args:
        margin: distance >= 0 beyond which different-person pairs cost nothing.
        metric: "euclidean" (Hadsell et al.'s), "squared_euclidean" or "cosine".

    Calling it with (embeddings (B, D), labels (B,)) returns the scalar loss of
    ``contrastive_loss``; the ContrastiveStats of the last call are kept in ``last_stats``.
    ``Trainer`` accepts it like ``TripletLoss``.
    """

    def __init__(self, margin: float = 1.0, metric: str = "euclidean"):
        super().__init__()
        self.margin = _check_margin(margin)
        self.metric = check_metric(metric)
        self.last_stats: ContrastiveStats | None = None

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss, self.last_stats = contrastive_loss(
            embeddings, labels, margin=self.margin, metric=self.metric, return_stats=True
        )
        return loss

    def extra_repr(self) -> str:
        return f"margin={self.margin}, metric={self.metric!r}"
