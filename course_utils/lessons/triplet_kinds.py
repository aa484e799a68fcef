"""Which triplets a batch holds: none at all, or easy, semi-hard and hard ones.

* `random_batch_odds` (exact) and `simulate_random_batches` (by drawing) say how many
  anchor-positive pairs, anchors and triplets a random batch holds: why online mining uses
  P x K batches (notebook 04).
* `classify_triplets` sorts triplets by their distances and the margin (notebook 05, FaceNet's
  words): easy, d(A,P) + alpha <= d(A,N), loss 0; semi-hard, d(A,P) < d(A,N) < d(A,P) + alpha,
  farther than the positive but inside the margin; hard, d(A,N) <= d(A,P) with a positive
  loss. `batch_triplet_distances` and `triplet_kind_counts` feed the mining explorer.
"""
from __future__ import annotations

from fractions import Fraction
from math import comb
from typing import NamedTuple

import torch

from course_utils.core._validate import check_alpha, check_embeddings, check_labels, check_metric, check_tensor, check_whole_number
from course_utils.core.distances import pairwise_distances
from course_utils.core.mining import all_triplets

EASY, SEMIHARD, HARD = 0, 1, 2
KIND_NAMES = ("easy", "semi-hard", "hard")


class BatchOdds(NamedTuple):
    """What a batch of B pictures drawn at random (without replacement) holds.

    no_positive_probability: chance that no two pictures show the same person (no triplet).
    anchor_positive_pairs: expected ordered pairs (A, P), A != P (P K (K - 1) in a P x K batch).
    anchors: expected pictures with at least one positive in the batch.
    triplets: expected valid ordered triplets (A, P, N).
    """

    no_positive_probability: float
    anchor_positive_pairs: float
    anchors: float
    triplets: float


def random_batch_odds(n_identities: int, images_per_identity: int, batch_size: int) -> BatchOdds:
    """Exact odds for a batch drawn uniformly without replacement from a balanced set.

    The set has N = n_identities * images_per_identity pictures, m = images_per_identity
    of each person. A batch without a positive pair takes B distinct persons and one of
    their m pictures each: C(n_identities, B) m^B of the C(N, B) equally likely batches.
    Any two pictures of the batch show the same person with probability (m - 1) / (N - 1).
    A picture is an anchor when at least one of its B - 1 batch-mates, drawn from the N - 1
    other pictures, is one of its m - 1 same-person pictures: all but C(N - m, B - 1) of the
    C(N - 1, B - 1) equally likely sets of batch-mates.

    Args:
        n_identities: persons in the set (>= 2).
        images_per_identity: pictures per person (>= 1).
        batch_size: pictures per batch, 2 <= B <= N.
    Returns:
        BatchOdds.
    """
    check_whole_number(n_identities, "n_identities", 2)
    m = check_whole_number(images_per_identity, "images_per_identity", 1)
    n = n_identities * m
    b = check_whole_number(batch_size, "batch_size", 2)
    if b > n:
        raise ValueError(f"batch_size={b} is larger than the set ({n} pictures); choose batch_size <= {n}.")
    # Exact integers and fractions: C(10000, 64) has about 180 digits, too many for a float.
    no_positive = Fraction(comb(n_identities, b) * m**b, comb(n, b))
    same_person = Fraction(m - 1, n - 1)
    pairs = b * (b - 1) * same_person  # ordered (A, P), A != P
    anchors = b * (1 - Fraction(comb(n - m, b - 1), comb(n - 1, b - 1)))
    # Three distinct pictures: P shares A's person, then N is one of the N - m others among N - 2 left.
    triplets = b * (b - 1) * (b - 2) * same_person * Fraction(n - m, n - 2)
    return BatchOdds(float(no_positive), float(pairs), float(anchors), float(triplets))


def simulate_random_batches(labels: torch.Tensor, batch_size: int, trials: int, seed: int = 0) -> BatchOdds:
    """The same four numbers as `random_batch_odds`, measured on batches drawn at random.

    Args:
        labels: (N,) integer identity ids.
        batch_size: pictures per batch, 2 <= B <= N.
        trials: number of batches drawn (>= 1).
        seed: seed of the draws.
    Returns:
        BatchOdds with the observed share of batches without a pair and the observed means.
    """
    check_tensor(labels, "labels")
    labels = check_labels(labels, labels.shape[0] if labels.dim() else 0).cpu()
    b = check_whole_number(batch_size, "batch_size", 2)
    check_whole_number(trials, "trials", 1)
    check_whole_number(seed, "seed", 0)
    if b > len(labels):
        raise ValueError(f"batch_size={b} is larger than labels ({len(labels)} pictures).")
    generator = torch.Generator().manual_seed(seed)
    # The first B of a random permutation is a uniform draw without replacement.
    batches = torch.rand(trials, len(labels), generator=generator).argsort(dim=1)[:, :b]
    _, identity = torch.unique(labels, return_inverse=True)
    per_person = torch.zeros(trials, int(identity.max()) + 1, dtype=torch.long)
    per_person.scatter_add_(1, identity[batches], torch.ones_like(batches))
    pairs = (per_person * (per_person - 1)).sum(dim=1)  # ordered (A, P), A != P
    anchors = (per_person * (per_person >= 2)).sum(dim=1)
    triplets = (per_person * (per_person - 1) * (b - per_person)).sum(dim=1)
    return BatchOdds(float((pairs == 0).double().mean()), float(pairs.double().mean()),
                     float(anchors.double().mean()), float(triplets.double().mean()))


class KindCounts(NamedTuple):
    """How many triplets of each kind, for one margin alpha."""

    alpha: float
    easy: int
    semihard: int
    hard: int

    @property
    def total(self) -> int:
        return self.easy + self.semihard + self.hard

    @property
    def text(self) -> str:
        """Stable one-line summary, for example "easy: 123, semi-hard: 45, hard: 67"."""
        return f"easy: {self.easy}, semi-hard: {self.semihard}, hard: {self.hard}"


def _check_distances(d_ap, d_an) -> tuple[torch.Tensor, torch.Tensor]:
    for value, name in ((d_ap, "d_ap"), (d_an, "d_an")):
        check_tensor(value, name)
        if value.dim() != 1 or not value.is_floating_point():
            raise ValueError(
                f"{name} must be a 1-D floating tensor (one distance per triplet), got shape "
                f"{tuple(value.shape)} and dtype {value.dtype}."
            )
        if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
            raise ValueError(f"{name} must hold finite distances >= 0.")
    if d_ap.shape != d_an.shape:
        raise ValueError(f"d_ap and d_an need one entry per triplet each, got {tuple(d_ap.shape)} and {tuple(d_an.shape)}.")
    return d_ap, d_an


def classify_triplets(d_ap: torch.Tensor, d_an: torch.Tensor, alpha: float) -> torch.Tensor:
    """Kind of each triplet: EASY (0), SEMIHARD (1) or HARD (2).

    Args:
        d_ap: (T,) distances anchor-positive.
        d_an: (T,) distances anchor-negative.
        alpha: the margin, >= 0.
    Returns:
        (T,) long tensor of kinds; KIND_NAMES[kind] is its name.
    """
    d_ap, d_an = _check_distances(d_ap, d_an)
    alpha = check_alpha(alpha)
    kinds = torch.full(d_ap.shape, SEMIHARD, dtype=torch.long, device=d_ap.device)
    kinds[d_an <= d_ap] = HARD
    # Easy last: with alpha = 0 a tie d(A,N) = d(A,P) has loss 0, so it is easy, not hard.
    kinds[d_an >= d_ap + alpha] = EASY
    return kinds


def triplet_kind_counts(d_ap: torch.Tensor, d_an: torch.Tensor, alpha: float) -> KindCounts:
    """Count easy, semi-hard and hard triplets at margin alpha.

    Args:
        d_ap: (T,) distances anchor-positive.
        d_an: (T,) distances anchor-negative.
        alpha: the margin, >= 0.
    Returns:
        KindCounts(alpha, easy, semihard, hard).
    """
    kinds = classify_triplets(d_ap, d_an, alpha)
    easy, semihard, hard = torch.bincount(kinds, minlength=3).tolist()
    return KindCounts(float(alpha), easy, semihard, hard)


def zero_loss_fraction(d_ap: torch.Tensor, d_an: torch.Tensor, alpha: float) -> float:
    """Share of triplets whose loss max(d(A,P) - d(A,N) + alpha, 0) is already 0 (the easy ones).

    Args:
        d_ap: (T,) distances anchor-positive, T >= 1.
        d_an: (T,) distances anchor-negative.
        alpha: the margin, >= 0.
    Returns:
        float in [0, 1].
    """
    counts = triplet_kind_counts(d_ap, d_an, alpha)
    if counts.total == 0:
        raise ValueError("no triplets given: d_ap and d_an are empty.")
    return counts.easy / counts.total


def batch_triplet_distances(embeddings: torch.Tensor, labels: torch.Tensor,
                            metric: str = "squared_euclidean") -> tuple[torch.Tensor, torch.Tensor]:
    """d(A,P) and d(A,N) of every valid triplet of a batch, for `classify_triplets`.

    Args:
        embeddings: (B, D) encodings of the batch.
        labels: (B,) integer identity ids.
        metric: distance name.
    Returns:
        d_ap, d_an: two (T,) CPU tensors, T = number of valid triplets, detached.
    """
    check_embeddings(embeddings)
    labels = check_labels(labels, embeddings.shape[0], embeddings.device)
    dist = pairwise_distances(embeddings.detach(), metric=check_metric(metric))
    anchor_idx, positive_idx, negative_idx = all_triplets(labels)
    return dist[anchor_idx, positive_idx].cpu(), dist[anchor_idx, negative_idx].cpu()
