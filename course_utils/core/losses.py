"""Triplet losses: one triplet at a time, and fused batch versions with online mining.

The loss of one triplet is L(A, P, N) = max(d(A,P) - d(A,N) + alpha, 0). The batch
losses compute the (B, B) distance matrix once and choose triplets inside it:

* ``batch_all_triplet_loss``  every valid triplet, mean over those with positive loss;
* ``batch_hard_triplet_loss`` per anchor the farthest positive and closest negative;
* ``batch_semihard_triplet_loss`` per positive pair TensorFlow Addons' semi-hard negative.

None of them builds a B x B x B tensor: batch-all and semi-hard sort each row of the
distance matrix once, O(B^2 log B) time and O(B^2) memory. All return float32 (float64 for
float64 input), also under autocast, and their statistics as 0-dim tensors.

check_values=True (the default) helps a learner: NaN or inf embeddings raise a clear error,
a batch without a triplet warns; both read values on the host. A training loop passes False:
then no loss reads a value (no .item(), bool(), nonzero()), so a GPU never waits for Python.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F

from course_utils._validate import (
    check_alpha, check_choice, check_embeddings, check_labels, check_metric, check_nonnegative, check_same_shape,
)  # fmt: skip
from course_utils.core.distances import matrix_distances, row_distances
from course_utils.core.mining import anchor_negative_mask, anchor_positive_mask, hardest_pairs
from course_utils.core.mining import semihard_negative_columns, sort_rows

REDUCTIONS = ("none", "sum", "mean")
MININGS = ("all", "hard", "semihard")


class DegenerateBatchWarning(UserWarning):
    """The batch holds no valid triplet, so the loss is 0 and nothing is learned from it."""


class TripletStats(NamedTuple):
    """What a batch loss averaged over, as 0-dim int64 tensors on the embeddings' device.

    num_terms: triplets the loss considered (valid triplets for batch-all, anchors for
        batch-hard, positive pairs for semi-hard).
    num_active: how many of them had a positive loss (the ones that teach the network).
    ``int(stats.num_active)`` reads one (on a GPU, reading waits for the GPU).
    """

    num_terms: torch.Tensor
    num_active: torch.Tensor

    @property
    def active_fraction(self) -> float:
        """num_active / num_terms as a Python float (a host read), 0.0 when the loss considered nothing."""
        num_terms = int(self.num_terms)
        return int(self.num_active) / num_terms if num_terms else 0.0


def _warn_if_degenerate(num_terms: torch.Tensor, labels: torch.Tensor,
                        consequence: str = "The loss is 0 and this batch teaches nothing.") -> None:
    """Warn (one host read) when the batch held no triplet (or pair): the loss is then an attached 0."""
    if int(num_terms) == 0:
        warnings.warn(f"{_degenerate_reason(labels)} {consequence} Build batches of P >= 2 identities x K >= 2 "
                      "pictures each (see course_utils.data.PKBatchSampler).", DegenerateBatchWarning, stacklevel=3)


def _degenerate_reason(labels: torch.Tensor) -> str:
    if len(labels) < 2:
        return f"The batch has {len(labels)} picture(s)."
    if bool((labels == labels[0]).all()):
        return "Every picture in the batch has the same label, so there is no negative."
    return "No two pictures in the batch share a label, so there is no anchor-positive pair."


def _prepare(embeddings, labels, alpha, metric, check_values):
    check_embeddings(embeddings, check_values=check_values)
    labels = check_labels(labels, embeddings.shape[0], embeddings.device)
    return labels, check_alpha(alpha), check_metric(metric)


def triplet_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, alpha: float = 0.2,
    metric: str = "squared_euclidean", reduction: str = "none", check_values: bool = True,
) -> torch.Tensor:  # fmt: skip
    """Loss of given triplets, L = max(d(A,P) - d(A,N) + alpha, 0) row by row.

    Args:
        anchor, positive, negative: (m, d) encodings; row i is triplet i.
        alpha: margin >= 0.
        metric: "squared_euclidean" (the course's d), "euclidean" or "cosine".
        reduction: "none" gives (m,) losses, "sum" the cost J = sum_i L_i, "mean" J / m.
        check_values: refuse NaN/inf inputs (a host read); False reads nothing.
    Returns:
        (m,) or scalar float tensor.
    """
    alpha = check_alpha(alpha)
    check_metric(metric)
    check_choice(reduction, "reduction", REDUCTIONS)
    for name, x in (("anchor", anchor), ("positive", positive), ("negative", negative)):
        check_embeddings(x, name, check_values)
    check_same_shape(anchor, positive, "anchor", "positive")
    check_same_shape(anchor, negative, "anchor", "negative")
    d_ap = row_distances(anchor, positive, metric, check_values)
    losses = (d_ap - row_distances(anchor, negative, metric, check_values) + alpha).clamp_min(0)
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.mean() if len(losses) else losses.sum()
    return losses


def batch_all_triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, alpha: float = 0.2, metric: str = "squared_euclidean",
    return_stats: bool = False, check_values: bool = True,
):  # fmt: skip
    """Mean loss over all valid triplets of the batch whose loss is positive.

    For an anchor a and positive p, the negatives with positive loss are those with
    d(a, n) < d(a, p) + alpha =: t(a, p). Row a holds d(a, n) for its negatives and t(a, p)
    for its positives; sorted once, the row tells by counting, for each pair, how many
    negatives lie below its t (c(a, p), its active triplets) and, for each negative, how
    many thresholds lie above it (the pairs it is active for). The summed loss is then
    sum_p c(a, p) t(a, p) - sum_n (pairs of n) d(a, n): counts and one sort, no loop over
    negatives and no B x B x B tensor.

    Args:
        embeddings: (B, D) encodings; labels: (B,) integer labels.
        alpha: margin >= 0; metric: distance name.
        return_stats: also return TripletStats(valid triplets, triplets with positive loss).
        check_values: NaN/inf error and degenerate-batch warning (host reads); False reads nothing.
    Returns:
        scalar loss (0 when no triplet has positive loss), and the stats if asked.
    """
    labels, alpha, metric = _prepare(embeddings, labels, alpha, metric, check_values)
    dist = matrix_distances(embeddings, None, metric, check_values)
    anchor_positive = anchor_positive_mask(labels)
    anchor_negative = anchor_negative_mask(labels)
    num_valid = (anchor_positive.sum(dim=1) * anchor_negative.sum(dim=1)).sum()
    if check_values:
        _warn_if_degenerate(num_valid, labels)
    with torch.no_grad():  # counting: the counts are constant where the loss has a gradient
        # keys[a, j]: t(a, j) for a positive j, d(a, j) for a negative (and for a itself, unused).
        keys = dist + alpha * anchor_positive  # (B, B)
        # Ties: a negative equal to t has loss exactly 0, inactive. Sorting the thresholds before
        # equal negatives makes "before" mean strictly below and "after" strictly above.
        order = sort_rows(keys, first_at_ties=anchor_positive)  # (B, B), each row ascending
        is_negative = anchor_negative.gather(1, order)  # (B, B) in sorted order
        is_threshold = anchor_positive.gather(1, order)
        # At a threshold's rank the negatives up to it are the ones before it, and vice versa.
        negatives_upto = is_negative.cumsum(dim=1, dtype=torch.int32)  # (B, B): at ranks <= k
        thresholds_upto = is_threshold.cumsum(dim=1, dtype=torch.int32)
        active = torch.where(is_threshold, negatives_upto, 0)  # (B, B): c(a, p) at p's rank
        thresholds_after = thresholds_upto[:, -1:] - thresholds_upto  # (B, B): at ranks > k
        weight = active - torch.where(is_negative, thresholds_after, 0)  # (B, B), sorted order
        weight = torch.empty_like(weight).scatter_(1, order, weight)  # (B, B), column order
    num_active = active.sum()
    # The summed loss sum_(a,p) c (d(a,p) + alpha) - sum_(a,n) (pairs of n) d(a,n), whose gradient
    # is the weight. In float64: the two sums are large and nearly cancel, float32 would lose digits.
    total = torch.dot(weight.double().flatten(), dist.double().flatten()) + alpha * num_active.double()
    loss = (total / num_active.clamp_min(1)).to(dist.dtype)  # 0 when no triplet is active
    return (loss, TripletStats(num_valid, num_active)) if return_stats else loss


def batch_hard_triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, alpha: float = 0.2, metric: str = "squared_euclidean",
    soft: bool = False, return_stats: bool = False, check_values: bool = True,
):  # fmt: skip
    """Batch-hard loss (Hermans, Beyer, Leibe 2017): each anchor with its hardest pair.

    For each anchor, the farthest positive and the closest negative; the mean is over
    anchors that have at least one positive and one negative (others are dropped, not
    counted as zero).

    Args:
        embeddings: (B, D) encodings; labels: (B,) integer labels.
        alpha: margin >= 0 (not used when soft=True); metric: distance name.
        soft: use softplus(d(A,P) - d(A,N)) instead of the hinge, the "soft margin".
        return_stats: also return TripletStats(anchors used, anchors with positive loss).
        check_values: NaN/inf error and degenerate-batch warning (host reads); False reads nothing.
    Returns:
        scalar loss, and the stats if asked.
    """
    labels, alpha, metric = _prepare(embeddings, labels, alpha, metric, check_values)
    # Choosing needs the whole matrix but only 2 entries per anchor get a gradient: choose
    # without autograd, then recompute just the chosen distances with it (less memory, faster).
    with torch.no_grad():
        dist = matrix_distances(embeddings, None, metric, check_values)
    positive_idx, negative_idx, has_both = hardest_pairs(dist, labels)
    num_anchors = has_both.sum()
    if check_values:
        _warn_if_degenerate(num_anchors, labels)
    # Both chosen distances in one row-wise call: rows [0, B) are d(A,P), rows [B, 2B) d(A,N).
    n = len(labels)
    chosen = embeddings[torch.cat((positive_idx, negative_idx))]  # (2B, D)
    d = row_distances(embeddings.repeat(2, 1), chosen, metric, check_values=False)  # rows checked above
    gap = d[:n] - d[n:]
    losses = torch.where(has_both, F.softplus(gap) if soft else (gap + alpha).clamp_min(0), 0)  # (B,)
    loss = losses.sum() / num_anchors.clamp_min(1)  # mean over the anchors with a triplet
    return (loss, TripletStats(num_anchors, (losses > 0).sum())) if return_stats else loss


def batch_semihard_triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, alpha: float = 0.2, metric: str = "squared_euclidean",
    return_stats: bool = False, check_values: bool = True,
):  # fmt: skip
    """Semi-hard loss as TensorFlow Addons' TripletSemiHardLoss computes it.

    For each positive pair (a, p): the closest negative with d(a, n) > d(a, p); when none
    is farther than p, the farthest negative of a. The mean is over all positive pairs,
    zero-loss pairs included.

    This differs from pytorch-metric-learning's TripletMarginMiner("semihard"), which keeps
    every triplet with d(a,p) < d(a,n) < d(a,p) + alpha (often several per pair, often
    none) and then averages the non-zero losses.

    Args:
        embeddings: (B, D) encodings; labels: (B,) integer labels.
        alpha: margin >= 0; metric: distance name.
        return_stats: also return TripletStats(positive pairs, pairs with positive loss).
        check_values: NaN/inf error and degenerate-batch warning (host reads); False reads nothing.
    Returns:
        scalar loss, and the stats if asked.
    """
    labels, alpha, metric = _prepare(embeddings, labels, alpha, metric, check_values)
    dist = matrix_distances(embeddings, None, metric, check_values)
    # Pairs whose anchor has a negative; each gets one negative, in a (B, B) layout (no indices).
    pairs = anchor_positive_mask(labels) & anchor_negative_mask(labels).any(dim=1, keepdim=True)  # (B, B)
    num_pairs = pairs.sum()
    if check_values:
        _warn_if_degenerate(num_pairs, labels)
    negative = semihard_negative_columns(dist.detach(), labels)  # (B, B): [a, p] -> n
    hinge = (dist - dist.gather(1, negative) + alpha).clamp_min(0)  # (B, B): d(a,p) - d(a,n) + alpha
    losses = torch.where(pairs, hinge, 0)
    loss = losses.sum() / num_pairs.clamp_min(1)  # mean over the positive pairs
    return (loss, TripletStats(num_pairs, (losses > 0).sum())) if return_stats else loss


_BATCH_LOSSES = dict(all=batch_all_triplet_loss, hard=batch_hard_triplet_loss, semihard=batch_semihard_triplet_loss)


class TripletLoss(torch.nn.Module):
    """Triplet loss with online mining, as a module for training loops.

    Args:
        alpha: margin >= 0.
        mining: "all", "hard" or "semihard" (see the batch_* functions).
        metric: "squared_euclidean", "euclidean" or "cosine".
        soft: soft-margin batch-hard (only with mining="hard").
        check_values: passed to the loss; False for training loops that must not wait for the GPU.

    Calling it with (embeddings (B, D), labels (B,)) returns the scalar loss; the
    TripletStats of the last call are kept in ``last_stats``.
    """

    def __init__(
        self, alpha: float = 0.2, mining: str = "all", metric: str = "squared_euclidean", soft: bool = False,
        check_values: bool = True,
    ):  # fmt: skip
        super().__init__()
        self.alpha = check_alpha(alpha)
        self.mining = check_choice(mining, "mining", MININGS)
        self.metric = check_metric(metric)
        if soft and mining != "hard":
            raise ValueError("soft=True is the soft-margin batch-hard loss; use it with mining='hard'.")
        self.soft = soft
        self.check_values = check_values
        self.last_stats: TripletStats | None = None

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        extra = {"soft": True} if self.soft else {}
        loss, self.last_stats = _BATCH_LOSSES[self.mining](
            embeddings, labels, self.alpha, self.metric, return_stats=True, check_values=self.check_values, **extra
        )
        return loss

    def extra_repr(self) -> str:
        soft = ", soft=True" if self.soft else ""
        checks = "" if self.check_values else ", check_values=False"
        return f"alpha={self.alpha}, mining={self.mining!r}, metric={self.metric!r}{soft}{checks}"


# ---------------------------------------------------------------------------
# The contrastive loss: pairs instead of triplets.


class ContrastiveStats(TripletStats):
    """TripletStats of a contrastive loss: num_terms counts the unordered pairs of the batch,
    num_active the pairs with a positive loss (same-person pairs not yet at distance 0,
    different-person pairs closer than the margin)."""

    __slots__ = ()


def _check_margin(margin) -> float:
    why = "Different-person pairs closer than the margin (a distance) are pushed apart; a negative one pushes nothing."
    return check_nonnegative(margin, "margin", why)


def contrastive_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 1.0, metric: str = "euclidean",
    return_stats: bool = False, check_values: bool = True,
):  # fmt: skip
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
        check_values: NaN/inf error and degenerate-batch warning (host reads); False reads nothing.
    Returns:
        scalar loss, and the stats if asked. A batch without same-person pairs (or without
        different-person pairs) warns with DegenerateBatchWarning; the missing mean counts 0.
    """
    check_embeddings(embeddings, check_values=check_values)
    labels = check_labels(labels, embeddings.shape[0], embeddings.device)
    margin, metric = _check_margin(margin), check_metric(metric)
    # The Euclidean root is a safe sqrt: duplicate points (D = 0) give a zero gradient, not
    # the NaN of d sqrt(s)/ds = 1 / (2 sqrt(0)).
    dist = matrix_distances(embeddings, None, metric, check_values)
    upper = torch.ones_like(dist, dtype=torch.bool).triu(diagonal=1)  # each unordered pair once
    same, different = anchor_positive_mask(labels) & upper, anchor_negative_mask(labels) & upper  # (B, B)
    pull = torch.where(same, dist**2 / 2, 0)  # (B, B)
    push = torch.where(different, (margin - dist).clamp_min(0) ** 2 / 2, 0)
    num_same, num_different = same.sum(), different.sum()
    if check_values and int(num_same) * int(num_different) == 0:
        missing, only = ("same-person", "pushes") if int(num_same) == 0 else ("different-person", "pulls")
        _warn_if_degenerate(0, labels, f"With no {missing} pair the contrastive loss only {only}; the missing term "
                            "counts 0.")
    # Two means; an empty term's sum is 0, still attached to the graph, so backward() runs.
    loss = pull.sum() / num_same.clamp_min(1) + push.sum() / num_different.clamp_min(1)
    if return_stats:
        num_active = (pull > 0).sum() + (push > 0).sum()
        return loss, ContrastiveStats(num_same + num_different, num_active)
    return loss


class ContrastiveLoss(torch.nn.Module):
    """Contrastive loss over all pairs of a batch, as a module for training loops.

    Args:
        margin: distance >= 0 beyond which different-person pairs cost nothing.
        metric: "euclidean" (Hadsell et al.'s), "squared_euclidean" or "cosine".
        check_values: passed to ``contrastive_loss``.

    Calling it with (embeddings (B, D), labels (B,)) returns the scalar loss of
    ``contrastive_loss``; the ContrastiveStats of the last call are kept in ``last_stats``.
    ``Trainer`` accepts it like ``TripletLoss``.
    """

    def __init__(self, margin: float = 1.0, metric: str = "euclidean", check_values: bool = True):
        super().__init__()
        self.margin = _check_margin(margin)
        self.metric = check_metric(metric)
        self.check_values = check_values
        self.last_stats: ContrastiveStats | None = None

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss, self.last_stats = contrastive_loss(
            embeddings, labels, self.margin, self.metric, return_stats=True, check_values=self.check_values
        )
        return loss

    def extra_repr(self) -> str:
        checks = "" if self.check_values else ", check_values=False"
        return f"margin={self.margin}, metric={self.metric!r}{checks}"
