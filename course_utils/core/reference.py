"""Slow, obvious versions of the distances, masks, miners and losses.

Every function here is a plain loop over pairs or triplets, written to be read, not
run on big batches. They compute in float64 and are the ground truth that the fast
code in `distances`, `mining` and `losses` is tested against, and that the
notebooks' exercise checks compare a learner's answer with. They stay
differentiable (torch scalar operations), so gradients can be compared too.
"""
from __future__ import annotations

import math

import torch


def distance(a: torch.Tensor, b: torch.Tensor, metric: str = "squared_euclidean") -> torch.Tensor:
    """d(a, b) for two 1-D vectors, straight from the definition, in float64."""
    a, b = a.double(), b.double()
    if metric == "squared_euclidean":
        return ((a - b) ** 2).sum()
    if metric == "euclidean":
        squared = ((a - b) ** 2).sum()
        # Same convention as the fast code: distance 0 has gradient 0.
        return squared.clamp_min(torch.finfo(torch.float64).tiny).sqrt() if squared > 0 else squared * 0
    if metric == "cosine":
        return 1 - (a @ b) / (a.norm() * b.norm())
    raise ValueError(f"unknown metric {metric!r}")


def pairwise_distances(x: torch.Tensor, y: torch.Tensor | None = None,
                       metric: str = "squared_euclidean") -> torch.Tensor:
    """(n, m) matrix of d(x_i, y_j), one pair at a time."""
    y = x if y is None else y
    rows = []
    for i in range(x.shape[0]):
        rows.append(torch.stack([distance(x[i], y[j], metric) for j in range(y.shape[0])]))
    return torch.stack(rows)


def anchor_positive_mask(labels: torch.Tensor) -> torch.Tensor:
    """mask[a, p] is True when a != p and both pictures show the same person."""
    n = len(labels)
    mask = torch.zeros(n, n, dtype=torch.bool)
    for a in range(n):
        for p in range(n):
            mask[a, p] = a != p and labels[a] == labels[p]
    return mask


def anchor_negative_mask(labels: torch.Tensor) -> torch.Tensor:
    """mask[a, n] is True when the pictures show different persons."""
    n = len(labels)
    mask = torch.zeros(n, n, dtype=torch.bool)
    for a in range(n):
        for k in range(n):
            mask[a, k] = labels[a] != labels[k]
    return mask


def valid_triplet_mask(labels: torch.Tensor) -> torch.Tensor:
    """mask[a, p, n] is True for every valid triplet (a != p, same person; n another person)."""
    n = len(labels)
    mask = torch.zeros(n, n, n, dtype=torch.bool)
    for a in range(n):
        for p in range(n):
            for k in range(n):
                mask[a, p, k] = a != p and labels[a] == labels[p] and labels[a] != labels[k]
    return mask


def triplet_loss(anchor, positive, negative, alpha=0.2, metric="squared_euclidean", reduction="none"):
    """max(d(A,P) - d(A,N) + alpha, 0) for each row, then the chosen reduction."""
    losses = []
    for a, p, n in zip(anchor, positive, negative):
        losses.append(torch.clamp(distance(a, p, metric) - distance(a, n, metric) + alpha, min=0))
    losses = torch.stack(losses) if losses else torch.zeros(0, dtype=torch.float64)
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.mean()
    return losses


def mean_over_active(losses: torch.Tensor) -> torch.Tensor:
    """Mean of the positive losses (the "active" triplets) of a 1-D tensor; 0 when none is positive.

    The 0 is computed from the losses (their sum times 0, plus 0.0 so that it is never -0.0), so
    it stays in the autograd graph with a zero gradient, never a NaN one.
    """
    active = [loss for loss in losses.double() if loss > 0]
    if not active:
        return _attached_zero(losses.double())
    return torch.stack(active).sum() / len(active)


def _attached_zero(values: torch.Tensor) -> torch.Tensor:
    """A loss of 0 that stays in the autograd graph of values, with a zero gradient.

    values.sum() * 0 alone is -0.0 (printed "-0.0") when the sum is negative; adding +0.0
    makes it +0.0, since -0.0 + 0.0 = +0.0 in floating point.
    """
    return values.sum() * 0 + 0.0


def all_triplets(labels: torch.Tensor) -> list[tuple[int, int, int]]:
    """Every valid (anchor, positive, negative) index triplet."""
    labels = labels.tolist()
    n = len(labels)
    return [(a, p, k) for a in range(n) for p in range(n) for k in range(n)
            if a != p and labels[a] == labels[p] and labels[k] != labels[a]]


def batch_all_triplet_loss(embeddings, labels, alpha=0.2, metric="squared_euclidean"):
    """Mean loss over the valid triplets whose loss is positive, with the counts.

    Returns:
        (loss, number of valid triplets, number of triplets with positive loss).
    """
    dist = pairwise_distances(embeddings, metric=metric)
    positive_losses = []
    valid = 0
    for a, p, k in all_triplets(labels):
        valid += 1
        loss = dist[a, p] - dist[a, k] + alpha
        if loss > 0:
            positive_losses.append(loss)
    if not positive_losses:
        return _attached_zero(dist), valid, 0
    return torch.stack(positive_losses).mean(), valid, len(positive_losses)


def hard_triplets(embeddings, labels, metric="squared_euclidean") -> list[tuple[int, int, int]]:
    """Batch-hard: for each anchor, its farthest positive and its closest negative."""
    dist = pairwise_distances(embeddings, metric=metric)
    labels = labels.tolist()
    triplets = []
    for a in range(len(labels)):
        positives = [p for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        negatives = [k for k in range(len(labels)) if labels[k] != labels[a]]
        if positives and negatives:
            p = max(positives, key=lambda j: dist[a, j].item())
            k = min(negatives, key=lambda j: dist[a, j].item())
            triplets.append((a, p, k))
    return triplets


def batch_hard_triplet_loss(embeddings, labels, alpha=0.2, metric="squared_euclidean", soft=False):
    """Mean over anchors (with a positive and a negative) of the batch-hard loss."""
    dist = pairwise_distances(embeddings, metric=metric)
    losses = []
    for a, p, k in hard_triplets(embeddings, labels, metric):
        gap = dist[a, p] - dist[a, k]
        losses.append(torch.nn.functional.softplus(gap) if soft else torch.clamp(gap + alpha, min=0))
    return torch.stack(losses).mean() if losses else _attached_zero(dist)


def semihard_triplets(embeddings, labels, metric="squared_euclidean") -> list[tuple[int, int, int]]:
    """For each positive pair (a, p): the closest negative farther than p, else the farthest negative.

    This is what TensorFlow Addons' TripletSemiHardLoss computes. The margin plays no
    part in the choice: a negative beyond d(a, p) + alpha is still chosen when it is
    the closest one beyond d(a, p).
    """
    dist = pairwise_distances(embeddings, metric=metric)
    labels = labels.tolist()
    n = len(labels)
    triplets = []
    for a in range(n):
        negatives = [k for k in range(n) if labels[k] != labels[a]]
        if not negatives:
            continue
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            farther = [k for k in negatives if dist[a, k] > dist[a, p]]
            if farther:
                k = min(farther, key=lambda j: dist[a, j].item())
            else:
                k = max(negatives, key=lambda j: dist[a, j].item())
            triplets.append((a, p, k))
    return triplets


def semihard_window_mask(dist, labels, alpha=0.2) -> torch.Tensor:
    """FaceNet's semi-hard triplets as a (B, B, B) mask, one loop step per index triple.

    mask[a, p, n] is True when (a, p, n) is a valid triplet (p another picture of a's
    person, n a picture of another person) and d(a, p) < d(a, n) < d(a, p) + alpha:
    the negative is farther than the positive, but inside the margin. Unlike
    `semihard_triplets` (TensorFlow Addons' choice), the margin is part of the rule.
    """
    labels = labels.tolist()
    n = len(labels)
    mask = torch.zeros(n, n, n, dtype=torch.bool)
    for a in range(n):
        for p in range(n):
            for k in range(n):
                valid = p != a and labels[p] == labels[a] and labels[k] != labels[a]
                mask[a, p, k] = valid and bool(dist[a, p] < dist[a, k] < dist[a, p] + alpha)
    return mask


def batch_semihard_triplet_loss(embeddings, labels, alpha=0.2, metric="squared_euclidean"):
    """Mean over all positive pairs (zero losses included) of the semi-hard triplet loss."""
    dist = pairwise_distances(embeddings, metric=metric)
    triplets = semihard_triplets(embeddings, labels, metric)
    losses = [torch.clamp(dist[a, p] - dist[a, k] + alpha, min=0) for a, p, k in triplets]
    return torch.stack(losses).mean() if losses else _attached_zero(dist)


def contrastive_loss(embeddings, labels, margin=1.0, metric="euclidean"):
    """Contrastive loss: mean of D^2/2 over same-person pairs + mean of max(0, margin - D)^2/2 over the others.

    Returns (loss, number of pairs, number of pairs with positive loss). A kind of pair
    the batch lacks contributes 0.
    """
    pull, push = [], []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            d = distance(embeddings[i], embeddings[j], metric)
            if labels[i] == labels[j]:
                pull.append(d**2 / 2)
            else:
                push.append(torch.clamp(margin - d, min=0) ** 2 / 2)
    loss = torch.zeros((), dtype=torch.float64)
    for losses in (pull, push):
        if losses:
            loss = loss + torch.stack(losses).mean()
    active = sum(int(value > 0) for value in pull + push)
    return loss, len(pull) + len(push), active


# ---------------------------------------------------------------------------
# Notebook 08: the name of a run's failure, read from its per-step records.


def name_the_failure(history, alpha):
    """Notebook 08's five rules, one after the other, for a run with squared Euclidean distances.

    history is a list of records (dicts with loss, active_fraction, mean_d_ap, mean_d_an,
    embedding_norm; active_fraction and the distances may be None). The first rule that
    matches gives the name:
    1. "nan": some loss, mean_d_ap, mean_d_an or embedding_norm is NaN or infinite;
    2. "no_valid_triplets": more than half of the records have active_fraction None;
    3. "margin_too_large": the last record's embedding_norm is within 0.001 of 1 (unit
       vectors, so squared distances are at most 4) and alpha >= 4;
    4. "collapsed": the last record's mean_d_an < 0.1 alpha and its loss within 0.1 alpha of alpha;
    5. otherwise "healthy".
    """
    for record in history:
        for key in ("loss", "mean_d_ap", "mean_d_an", "embedding_norm"):
            if record[key] is not None and not math.isfinite(record[key]):
                return "nan"
    without_triplets = sum(record["active_fraction"] is None for record in history)
    if without_triplets > len(history) / 2:
        return "no_valid_triplets"
    last = history[-1]
    if abs(last["embedding_norm"] - 1) < 0.001 and alpha >= 4:
        return "margin_too_large"
    if last["mean_d_an"] is not None and last["mean_d_an"] < 0.1 * alpha and abs(last["loss"] - alpha) < 0.1 * alpha:
        return "collapsed"
    return "healthy"


# ---------------------------------------------------------------------------
# Notebook 07: the errors of verification by a distance threshold.


def verification_errors(same_distances, different_distances, threshold):
    """False accepts and false rejects at one threshold, one pair at a time.

    A pair is accepted when its distance is <= threshold. An accepted different-person pair
    is a false accept, a rejected same-person pair a false reject. Each rate divides by the
    number of pairs of its own kind. Returns (false_accepts, false_rejects,
    false_accept_rate, false_reject_rate) as int, int, float, float.
    """
    false_accepts = sum(d <= threshold for d in different_distances.tolist())
    false_rejects = sum(d > threshold for d in same_distances.tolist())
    return false_accepts, false_rejects, false_accepts / len(different_distances), false_rejects / len(same_distances)


def error_rates(same_distances, different_distances, thresholds):
    """False-accept and false-reject rates at each threshold, and the equal error rate among them.

    The equal error rate is the mean of the two rates at the threshold where they differ
    least (the first such threshold on ties). Returns (false_accept_rates (T,),
    false_reject_rates (T,), equal_error_rate 0-d), float64.
    """
    far, frr = [], []
    for threshold in thresholds.tolist():
        _, _, false_accept_rate, false_reject_rate = verification_errors(same_distances, different_distances, threshold)
        far.append(false_accept_rate)
        frr.append(false_reject_rate)
    best = min(range(len(far)), key=lambda i: abs(far[i] - frr[i]))  # the first one on ties
    equal = (far[best] + frr[best]) / 2
    return tuple(torch.tensor(values, dtype=torch.float64) for values in (far, frr, equal))
